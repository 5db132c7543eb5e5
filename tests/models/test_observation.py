"""Tracker model: log density and closed-form weighted least squares."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from gazeem.models.observation import TrackerModel, TrackerStats


@pytest.fixture
def problem():
    rng = np.random.default_rng(2)
    f, k = 60, 5
    pos = rng.uniform(-20, 20, size=(f, k, 2))
    w = rng.dirichlet(np.ones(k), size=f)
    a = np.array([[1.04, 0.02], [-0.03, 0.96]])
    b = np.array([1.5, -2.0])
    reading = (w[..., None] * pos).sum(1) @ a.T + b + rng.normal(0, 1.5, size=(f, 2))
    return pos, w, reading


def weighted_lstsq(pos, w, reading, with_gain, with_offset, a0, b0):
    """Reference: explicit weighted least squares over every (fixation, cell) pair."""
    p = pos.reshape(-1, 2)
    r = np.repeat(reading, pos.shape[1], axis=0)
    sw = np.sqrt(w.reshape(-1))
    if with_gain and with_offset:
        x = np.c_[p, np.ones(len(p))]
        coef = np.linalg.lstsq(x * sw[:, None], r * sw[:, None], rcond=None)[0]
        a, b = coef[:2].T, coef[2]
    elif with_gain:
        coef = np.linalg.lstsq(p * sw[:, None], (r - b0) * sw[:, None], rcond=None)[0]
        a, b = coef.T, b0
    elif with_offset:
        a, b = a0, np.average(r - p @ a0.T, axis=0, weights=w.reshape(-1))
    else:
        a, b = a0, b0
    res = r - p @ a.T - b
    sigma = np.sqrt(np.average((res**2).sum(1), weights=w.reshape(-1)) / 2)
    return a, b, sigma


class TestTrackerModel:
    def test_log_prob_is_an_isotropic_gaussian(self):
        m = TrackerModel(
            sigma=2.5, gain=torch.tensor([[1.1, 0.1], [0.0, 0.9]], dtype=torch.float64)
        )
        m.offset = torch.tensor([0.5, -1.0], dtype=torch.float64)
        pos = torch.tensor([[[1.0, 2.0], [-3.0, 4.0]]], dtype=torch.float64)
        r = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
        got = m.log_prob(r, pos).numpy()[0]
        for j in range(2):
            mean = m.gain.numpy() @ pos[0, j].numpy() + m.offset.numpy()
            assert got[j] == pytest.approx(
                multivariate_normal(mean, 2.5**2 * np.eye(2)).logpdf(r[0].numpy())
            )

    @pytest.mark.parametrize(
        "with_gain,with_offset", [(False, False), (True, False), (False, True), (True, True)]
    )
    def test_m_step_matches_weighted_least_squares(self, problem, with_gain, with_offset):
        pos, w, reading = problem
        a0 = np.array([[1.0, 0.0], [0.0, 1.0]])
        b0 = np.array([0.3, 0.1])
        m = TrackerModel(
            sigma=1.0,
            gain=torch.as_tensor(a0),
            offset=torch.as_tensor(b0),
            learn_gain=with_gain,
            learn_offset=with_offset,
        )
        m.m_step(
            TrackerStats.from_weighted(
                torch.as_tensor(reading), torch.as_tensor(pos), torch.as_tensor(w)
            )
        )
        a, b, sigma = weighted_lstsq(pos, w, reading, with_gain, with_offset, a0, b0)
        np.testing.assert_allclose(m.gain.numpy(), a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(m.offset.numpy(), b, rtol=1e-10, atol=1e-12)
        assert m.sigma == pytest.approx(sigma, rel=1e-10)

    def test_invert_undoes_predict(self):
        m = TrackerModel(gain=torch.tensor([[1.05, 0.1], [-0.2, 0.95]], dtype=torch.float64))
        m.offset = torch.tensor([3.0, -4.0], dtype=torch.float64)
        z = torch.tensor([[1.0, 2.0], [-7.0, 0.5]], dtype=torch.float64)
        np.testing.assert_allclose(m.invert(m.predict(z)).numpy(), z.numpy(), atol=1e-12)

    def test_sigma_has_a_floor(self):
        m = TrackerModel(sigma=1.0, min_sigma=0.1)
        pos = torch.zeros((3, 1, 2), dtype=torch.float64)
        m.m_step(
            TrackerStats.from_weighted(
                torch.zeros(3, 2, dtype=torch.float64), pos, torch.ones(3, 1)
            )
        )
        assert m.sigma == pytest.approx(0.1)
