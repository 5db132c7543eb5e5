"""The gaze E-step against brute-force enumeration with explicit loops over cells."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, poisson

from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.settings import ProblemSettings, WindowSettings
from gazeem.models import CellWeightsPrior, PoissonLN, TrackerModel


def patch_by_loops(stim, frame_idx, x, y, p):
    """The P x P retinal patch at gaze (x, y); zero outside the stimulus."""
    out = np.zeros((p, p))
    if frame_idx < 0:
        return out
    for i in range(p):
        for j in range(p):
            r, c = y - p // 2 + i, x - p // 2 + j
            if 0 <= r < stim.shape[1] and 0 <= c < stim.shape[2]:
                out[i, j] = stim[frame_idx, r, c]
    return out


@pytest.fixture
def problem(tiny_session):
    data = GazeData.from_dataset(tiny_session, torch.device("cpu"), torch.float64)
    rng = np.random.default_rng(3)
    resp = PoissonLN(2, 4, 2).double()
    with torch.no_grad():
        resp.rf.copy_(torch.as_tensor(rng.normal(0, 0.4, size=(2, 2, 4, 4))))
        resp.bias.copy_(torch.tensor([-0.7, -0.2]))
    grid = GazeGrid(0, 11, 0, 11)
    tracker = TrackerModel(sigma=1.3)
    tracker.gain = torch.tensor([[1.05, 0.02], [-0.03, 0.97]], dtype=torch.float64)
    tracker.offset = torch.tensor([0.4, -0.3], dtype=torch.float64)
    prior = CellWeightsPrior(torch.as_tensor(rng.uniform(0.2, 1.0, size=(12, 12))))
    settings = ProblemSettings(window=WindowSettings(k=3.0, h_min=2, h_max=3))
    return FixationProblem(data, grid, tracker, prior, resp, None, settings), tiny_session


def test_posterior_equals_brute_force_enumeration(problem):
    prob, ds = problem
    estep = prob.e_step()
    post = estep.posterior
    stim = ds["stimulus"].values.astype(np.float64)
    frame = ds["frame"].values
    counts = ds["counts"].values
    rf = prob.response.rf.detach().numpy()
    bias = prob.response.bias.detach().numpy()
    a, b, s = prob.tracker.gain.numpy(), prob.tracker.offset.numpy(), prob.tracker.sigma
    logw = prob.cell_prior.log_weights.numpy()
    fix = prob.data.fixation.numpy()
    center = prob.data.geometry.center_px
    total = 0.0
    assert post.windows.half == 3 and prob.data.n_fixations >= 5
    for f in range(prob.data.n_fixations):
        bins = np.flatnonzero(fix == f)
        reading = prob.data.fix_reading[f].numpy()
        cells = post.windows.cells[f].numpy()
        joint = np.zeros(len(cells))
        for k, (x, y) in enumerate(cells):
            ll = 0.0
            for t in bins:
                for n in range(2):
                    drive = bias[n]
                    for lag in range(2):
                        fi = frame[t - lag] if t - lag >= 0 else -1
                        drive += (rf[n, lag] * patch_by_loops(stim, fi, x, y, 4)).sum()
                    ll += poisson.logpmf(counts[t, n], np.exp(drive))
            track = multivariate_normal(
                a @ (np.array([x, y]) - center) + b, s**2 * np.eye(2)
            ).logpdf(reading)
            joint[k] = np.exp(ll + track + logw[y * 12 + x])
        q = joint / joint.sum()
        np.testing.assert_allclose(post.log_q[f].exp().numpy(), q, atol=1e-6, rtol=1e-6)
        total += np.log(joint.sum())
    assert estep.log_likelihood == pytest.approx(total, rel=1e-9)


def test_window_is_centred_on_the_tracker_reading(problem):
    prob, _ = problem
    win = prob.e_step().posterior.windows
    expected = prob.tracker.invert(prob.data.fix_reading).numpy() + prob.data.geometry.center_px
    c = np.clip(np.rint(expected), 3, 8)
    np.testing.assert_array_equal(win.centers.numpy(), c)
