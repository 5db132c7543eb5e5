"""Poisson LN response model: the conv2d window path against explicit loops."""

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from gazeem.models.response import PoissonLN, ResponseModel


def random_model(nonlinearity, n_units=3, p=4, lags=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = PoissonLN(n_units, p, lags, nonlinearity=nonlinearity).double()
    with torch.no_grad():
        m.rf.copy_(torch.randn(m.rf.shape, generator=g, dtype=torch.float64) * 0.3)
        m.bias.copy_(torch.randn(n_units, generator=g, dtype=torch.float64) * 0.3 - 0.5)
    return m


@pytest.mark.parametrize("nonlinearity", ["exp", "softplus"])
class TestWindowLogLikelihood:
    def test_conv_equals_loops_over_cells(self, nonlinearity):
        m = random_model(nonlinearity)
        rng = np.random.default_rng(1)
        t, lags, p, w = 3, 2, 4, 5
        r = w + p - 1
        crops = rng.normal(size=(t, lags, r, r))
        y = rng.poisson(1.0, size=(t, 3)).astype(float)
        got = m.window_log_likelihood(
            torch.as_tensor(crops), torch.as_tensor(y), torch.zeros(t, w * w, 2)
        )
        rf, bias = m.rf.detach().numpy(), m.bias.detach().numpy()
        for ti in range(t):
            for i in range(w):
                for j in range(w):
                    patch = crops[ti, :, i : i + p, j : j + p]
                    drive = (rf * patch[None]).sum(axis=(1, 2, 3)) + bias
                    rate = np.exp(drive) if nonlinearity == "exp" else np.log1p(np.exp(drive))
                    expected = poisson.logpmf(y[ti], rate).sum()
                    assert got[ti, i, j].item() == pytest.approx(expected, rel=1e-10)

    def test_generic_unfold_path_agrees(self, nonlinearity):
        m = random_model(nonlinearity)
        rng = np.random.default_rng(2)
        crops = torch.as_tensor(rng.normal(size=(2, 2, 9, 9)))
        y = torch.as_tensor(rng.poisson(1.0, size=(2, 3)).astype(float))
        z = torch.zeros(2, 36, 2, dtype=torch.float64)
        fast = m.window_log_likelihood(crops, y, z)
        generic = ResponseModel.window_log_likelihood(m, crops, y, z)
        torch.testing.assert_close(fast, generic, rtol=1e-12, atol=1e-10)


def test_penalty_is_ridge_plus_squared_laplacian():
    m = random_model("exp", n_units=2, p=5, lags=1)
    m.l2, m.smooth = 0.7, 0.3
    rf = m.rf.detach().numpy()
    lap = np.zeros_like(rf)
    pad = np.pad(rf, ((0, 0), (0, 0), (1, 1), (1, 1)))
    lap = (
        pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1] + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:] - 4 * rf
    )
    expected = -(0.7 * (rf**2).sum() + 0.3 * (lap**2).sum())
    assert m.log_penalty().item() == pytest.approx(expected, rel=1e-12)


def test_bias_initialisation_matches_mean_rate():
    for nl in ("exp", "softplus"):
        m = PoissonLN(2, 3, nonlinearity=nl).double()
        m.initialize_bias(torch.tensor([0.2, 1.5], dtype=torch.float64))
        x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
        rate = torch.exp(m.drive(x)) if nl == "exp" else torch.nn.functional.softplus(m.drive(x))
        torch.testing.assert_close(rate[0], torch.tensor([0.2, 1.5], dtype=torch.float64))


@pytest.mark.parametrize("nonlinearity", ["exp", "softplus"])
def test_analytic_m_step_gradient_equals_autograd(nonlinearity):
    m = random_model(nonlinearity, n_units=3, p=5, lags=2, seed=4)
    rng = np.random.default_rng(5)
    x = torch.as_tensor(rng.normal(size=(40, 2, 5, 5)))
    y = torch.as_tensor(rng.poisson(1.0, size=(40, 3)).astype(float))
    w = torch.as_tensor(rng.uniform(0.1, 1.0, size=40))
    loss = -(w * m.log_likelihood(x, y, torch.zeros(40, 2))).sum() * 0.01
    loss.backward()
    auto = (m.rf.grad.clone(), m.bias.grad.clone())
    m.rf.grad = m.bias.grad = None
    value = m.accumulate_weighted_loss(x, y, w, 0.01)
    torch.testing.assert_close(m.rf.grad, auto[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.bias.grad, auto[1], rtol=1e-10, atol=1e-12)
    # the same loss up to the constant Σ w log y!
    const = 0.01 * float((w[:, None] * torch.lgamma(y + 1)).sum())
    assert value == pytest.approx(float(loss.detach()) - const, rel=1e-10)
