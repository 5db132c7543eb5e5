"""The convolutional E-step against the straightforward reference, and the fast mode."""

import warnings

import numpy as np
import pytest
import torch

from gazeem.gaze.data import GazeData
from gazeem.gaze.estimator import GazeEM
from gazeem.gaze.fixation import FixationProblem
from gazeem.simulate import simulate_session

from ..oracles import reference_window_loglik

SIM = dict(
    n_bins=1500,
    n_units=10,
    patch_size=14,
    stim_rows=44,
    stim_cols=44,
    rf_sigma_px=(1.8, 2.4),
    gaze_range_px=10.0,
    n_lags=2,
    lag_weights=(1.0, 0.4),
)


@pytest.fixture(scope="module")
def fitted():
    ds = simulate_session(seed=4, **SIM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = GazeEM(
            patch_size=14, n_lags=2, window_k=3.0, max_iter=4, device="cpu", dtype="float64"
        ).fit(ds)
    return ds, exact


def problem_of(ds, est):
    """The fitted model as a problem over the session's data (as the estimator built it)."""
    data = GazeData.from_dataset(ds, torch.device("cpu"), torch.float64)
    settings = est.problem_settings()
    return FixationProblem(data, est.grid_, est.tracker_, est.prior_, est.response_, None, settings)


def test_conv_e_step_equals_the_reference_implementation(fitted):
    ds, est = fitted
    win = est.posterior_.windows
    prob = problem_of(ds, est)
    conv = prob.window_loglik(win)
    ref = reference_window_loglik(prob.data, est.response_, win)
    torch.testing.assert_close(conv, ref, rtol=1e-10, atol=1e-8)


def test_fast_mode_rescores_its_top_cells_exactly(fitted):
    ds, est = fitted
    prob = problem_of(ds, est)
    win = est.posterior_.windows
    exact = prob.window_loglik(win)
    other = prob.tracker.log_prob(prob.data.fix_reading, prob.tracker_positions(win)).to(exact)
    fast = prob.window_loglik_fast(win, other)
    kept = torch.isfinite(fast)
    assert int(kept.sum(1).max()) == est.fast_top_k == 25
    torch.testing.assert_close(fast[kept], exact[kept], rtol=1e-10, atol=1e-8)
    # the cells it keeps hold nearly all of the exact posterior's mass
    mass = torch.softmax(exact + other, dim=1).masked_fill(~kept, 0).sum(1)
    assert float(mass.median()) > 0.999 and float(mass.mean()) > 0.98


def test_fast_mode_posterior_means_match_exact_em(fitted):
    ds, exact = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = GazeEM(
            patch_size=14,
            n_lags=2,
            window_k=3.0,
            max_iter=4,
            device="cpu",
            dtype="float64",
            estep="fast",
        ).fit(ds)
    d = fast.gaze_per_bin()["mean"] - exact.gaze_per_bin()["mean"]
    assert np.sqrt(np.nanmean((d**2).sum(1))) < 0.1  # pixels
