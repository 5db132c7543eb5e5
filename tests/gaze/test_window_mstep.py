"""The M-step by windows equals the M-step by pairs (issue 19).

:class:`gazeem.gaze.window_mstep.WindowObjective` computes the expected log-likelihood's
rate term by convolutions over each fixation's box of kept cells and its linear term
from a fixed spike-triggered sum. It must give the pair batches' loss and gradient to
float64 round-off, for broad and sharp posteriors, scattered supports, one and two
lags, and held frames; and an M-step with it must reach the pair M-step's fields.
"""

import numpy as np
import pytest
import torch

import gazeem.gaze.fixation as fixation_module
from gazeem.em.estep import prune_support
from gazeem.gaze.window_mstep import WindowObjective
from tests.gaze.test_held_frames import held, problem

__all__ = ["held"]


def loss_and_grad(prob, objective_or_batches):
    resp = prob.response
    for p in resp.parameters():
        p.grad = None
    if isinstance(objective_or_batches, WindowObjective):
        loss = objective_or_batches.accumulate(resp, 1.0)
    else:
        loss = sum(
            resp.accumulate_weighted_loss(x, y, w, 1.0) for x, y, _, w in objective_or_batches()
        )
    return loss, resp.rf.grad.clone(), resp.bias.grad.clone()


def posterior_support(prob, mass):
    post = prob.e_step().posterior
    keep = prune_support(post.log_q, mass)
    return post.windows.cells, post.log_q.exp(), keep


@pytest.mark.parametrize("n_lags", [1, 2])
@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("mass", [1e-6, 0.3])
def test_window_loss_and_gradient_equal_the_pairs(held, n_lags, pooled, mass):
    prob, _ = problem(held, n_lags, pooled=pooled)
    torch.manual_seed(0)
    with torch.no_grad():  # fields that make the posterior neither flat nor a point
        prob.response.rf.normal_(0, 0.05)
        prob.response.bias.normal_(-1, 0.3)
    cells, weights, keep = posterior_support(prob, mass)
    sizes = keep.sum(1)
    assert int(sizes.max()) > 4 and int(sizes.min()) >= 1  # broad and sharp rows alike
    pairs = prob.batches.pair_batches(cells, weights, keep, cache=False, pooled=True)
    window = WindowObjective(prob.batches, cells, weights, keep, pooled=True, cache=True)
    assert window.total_weight == pytest.approx(sum(float(b[3].sum()) for b in pairs()), rel=1e-12)
    lp, gp_rf, gp_b = loss_and_grad(prob, pairs)
    lw, gw_rf, gw_b = loss_and_grad(prob, window)
    assert lw == pytest.approx(lp, rel=1e-11)
    scale = float(gp_rf.abs().max())
    np.testing.assert_allclose(gw_rf, gp_rf, atol=1e-10 * scale)
    np.testing.assert_allclose(gw_b, gp_b, rtol=1e-10, atol=1e-10 * float(gp_b.abs().max()))


def test_mstep_by_windows_reaches_the_pair_mstep(held, monkeypatch):
    fields = []
    for form in (True, False):
        monkeypatch.setattr(fixation_module, "WINDOW_MSTEP", form)
        prob, z0 = problem(held, 1, pooled=True)
        prob.fit_response_on_positions(torch.round(z0).long())
        prob.m_step(prob.e_step())
        fields.append(prob.response.rf.detach().clone())
    # both solve the same convex problem to L-BFGS's tolerance
    scale = float(fields[1].abs().max())
    np.testing.assert_allclose(fields[0], fields[1], atol=1e-4 * scale)
