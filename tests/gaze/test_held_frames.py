"""Held frames (photographs shown for seconds) are scored once per run, exactly.

:class:`gazeem.gaze.batches.Runs` pools consecutive bins of a fixation that see the same
frames. The pooled E-step must give the per-bin E-step's posterior and marginal
likelihood, and the pooled M-step the per-bin M-step's fields up to the optimiser's
stopping rule.
"""

import numpy as np
import pytest
import torch

from gazeem.gaze.build import build_response, build_tracker
from gazeem.gaze.data import GazeData
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.patches import gather_crops, lagged_frame_index
from gazeem.gaze.settings import ProblemSettings
from gazeem.models import UniformPrior
from tests.conftest import make_session


def problem(session, n_lags=1, pooled=True):
    data = GazeData.from_dataset(session, torch.device("cpu"), torch.float64)
    grid, tracker, _, z0 = build_tracker(
        data,
        "s",
        grid_margin_px=0,
        sigma_init=2.0,
        learn_sigma=True,
        learn_gain=False,
        offset="zero",
    )
    resp = build_response(
        data, None, patch_size=8, n_lags=n_lags, nonlinearity="exp", l2=1.0, smooth=10.0
    )
    prob = FixationProblem(
        data, grid, tracker, UniformPrior(grid.n_cells), resp, None, ProblemSettings()
    )
    if not pooled:
        prob.batches._runs = None
    return prob, z0


@pytest.fixture(scope="module")
def held():
    """Frames held 7 bins: runs start at fixation onsets and frame changes."""
    return make_session(
        "small",
        seed=3,
        n_bins=900,
        n_units=6,
        stim_rows=32,
        stim_cols=32,
        patch_size=8,
        frame_hold=7,
        stimulus="gaussian",
        gaze_range_px=6.0,
        n_lags=2,
        lag_weights=(1.0, 0.5),
        rf_sigma_px=(1.0, 1.5),
        rf_spread_px=0.5,
    )


def assert_same_fields(a: torch.Tensor, b: torch.Tensor) -> None:
    """Fields of two L-BFGS M-steps agree up to the optimiser's stopping rule.

    The pooled and per-bin objectives are equal but summed in different orders, and
    L-BFGS stops at a gradient of 1e-6 (``maximize_weighted``), so the two optima differ
    by the order of round-off over curvature: 7.6e-6 on fields of 0.13 (an Intel Xeon, 2
    threads). 1e-4 of the fields' largest value bounds that and is two orders below
    their statistical error on this session; a pooling bug (a run counted twice, a wrong
    frame) moves them by far more.
    """
    a, b = a.detach(), b.detach()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("n_lags", [1, 2])
def test_pooled_estep_and_mstep_equal_per_bin(held, n_lags):
    a, z0 = problem(held, n_lags, pooled=True)
    b, _ = problem(held, n_lags, pooled=False)
    runs = a.batches.runs
    # runs: a new run at each fixation onset and each frame change (more with two lags)
    assert runs is not None and runs.n_runs < 0.5 * a.data.fit_bins.numel()
    assert float(runs.size.sum()) == a.data.fit_bins.numel()
    for prob in (a, b):
        prob.fit_response_on_positions(torch.round(z0).long())
    assert_same_fields(a.response.rf, b.response.rf)
    b.response.load_state_dict(a.response.state_dict())  # the E-steps see the same fields
    ea, eb = a.e_step(), b.e_step()
    assert ea.log_likelihood == pytest.approx(eb.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(ea.posterior.log_q.exp(), eb.posterior.log_q.exp(), atol=1e-9)
    a.m_step(ea)
    b.m_step(eb)
    assert_same_fields(a.response.rf, b.response.rf)
    assert a.tracker.sigma == pytest.approx(b.tracker.sigma, rel=1e-8)


def test_noise_frames_are_not_pooled():
    s = make_session("small", seed=0, n_bins=300, stim_rows=32, stim_cols=32, patch_size=8)
    prob, _ = problem(s)
    assert prob.batches.runs is None


def test_moved_bins_are_scored_where_they_moved(held):
    """Bins that follow the eye (``Batches.shift``): every cell's score is the sum over the
    fixation's bins of the patch cut at the cell plus the bin's move, pooled or not."""
    a, z0 = problem(held, pooled=True)
    b, _ = problem(held, pooled=False)
    for prob in (a, b):
        prob.fit_response_on_positions(torch.round(z0).long())
    b.response.load_state_dict(a.response.state_dict())
    n_still = a.batches.runs.n_runs
    shift = torch.zeros(a.data.fixation.numel(), 2, dtype=torch.int64)
    shift[100:303, 0] = 1  # moves that start and end inside runs
    shift[500:650, 1] = -2
    for prob in (a, b):
        prob.batches.set_shift(shift)
    b.batches._runs = None
    assert a.batches.runs.n_runs > n_still  # a run ends where the move changes
    win = a.windows()
    got = a.window_loglik(win)
    np.testing.assert_allclose(got, b.window_loglik(win), rtol=1e-12)
    d, p = a.data, a.response.patch_size
    ox, oy = a.batches.offset
    bins = d.fit_bins
    fix = d.fixation[bins]
    for k in (0, win.side**2 // 2, win.side**2 - 1):
        cells = win.cells[fix, k] + shift[bins]
        x = gather_crops(
            d.frames,
            lagged_frame_index(d.frame, bins, 1),
            cells[:, 1] + oy - p // 2,
            cells[:, 0] + ox - p // 2,
            p,
        )
        ll = a.response.log_likelihood(x, d.counts[bins], cells.to(d.counts.dtype))
        want = torch.zeros(got.shape[0], dtype=torch.float64).index_add_(
            0, fix, ll.detach().double()
        )
        np.testing.assert_allclose(got[:, k], want, rtol=1e-10)


def test_spikes_of_a_subset_are_pooled_over_its_runs(held):
    """The held-out check lets only some bins' spikes in (``response_weight`` 0 or 1,
    alternate bins): those bins are pooled into runs of their own (not adjacent bins of a
    fixation that see the same frames), and every cell's score is the per-bin sum over
    them, as the weighted per-bin E-step gives it."""
    a, z0 = problem(held, pooled=True)
    a.fit_response_on_positions(torch.round(z0).long())
    d = a.data
    weight = torch.zeros(d.fixation.numel(), dtype=torch.float64)
    weight[d.fit_bins[::2]] = 1.0
    weight[d.fit_bins[d.fixation[d.fit_bins] % 3 == 0]] = 0.0  # whole fixations left out
    a.response_weight = weight
    bins, runs = a.batches.scored(a.response_weight)
    assert bins.numel() == int(weight.sum())
    assert runs is not None and runs.n_runs < 0.5 * bins.numel()
    assert float(runs.size.sum()) == bins.numel()
    win = a.windows()
    got = a.window_loglik(win)
    a.response_weight = 0.5 * weight  # not 0 or 1: a row per bin, each weighted
    assert a.batches.scored(a.response_weight)[1] is None
    want = 2.0 * a.window_loglik(win)
    np.testing.assert_allclose(got, want, rtol=1e-11)
    left_out = torch.unique(d.fixation[d.fit_bins][weight[d.fit_bins] == 0])
    assert bool((got[left_out[left_out % 3 == 0]] == 0).all())


@pytest.mark.parametrize("n_lags", [1, 2])
def test_chain_shares_a_crop_per_held_frame(held, n_lags):
    """The per-bin chain convolves one crop per run of bins that see the same frames in
    the same window, and adds each bin's own spikes: every bin's emission equals the
    emission computed from its own crop, for the exp and softplus nonlinearities."""
    from gazeem.gaze.drift import DriftProblem

    a, z0 = problem(held, n_lags)
    a.fit_response_on_positions(torch.round(z0).long())
    chain = DriftProblem(
        a.data, a.grid, a.tracker, a.cell_prior, a.response, None, ProblemSettings()
    )
    win = chain.base.windows()
    n = a.data.fit_bins.numel()
    first, row = chain._shared_crops(a.data.fit_bins, chain.group)
    assert int(first.sum()) < 0.5 * n and int(row[-1]) + 1 == int(first.sum())
    for nonlinearity in ("exp", "softplus"):
        a.response.nonlinearity = nonlinearity
        shared, _ = chain._emission_fn(win, cache=False)
        got = shared(0, n)
        chain._shared_crops = lambda bins, f: None
        own, _ = chain._emission_fn(win, cache=False)
        want = own(0, n)
        del chain._shared_crops
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        ok = torch.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-11, atol=1e-9)


def test_chain_mstep_pools_pairs_of_a_held_frame(held):
    """The chain's M-step cuts one patch per (run, cell): its pairs pooled over the bins
    of a held frame give the per-bin M-step's fields and tracker."""
    from gazeem.gaze.drift import DriftProblem

    fitted = []
    for pooled in (True, False):
        a, z0 = problem(held, 2)
        a.fit_response_on_positions(torch.round(z0).long())
        chain = DriftProblem(
            a.data, a.grid, a.tracker, a.cell_prior, a.response, None, ProblemSettings()
        )
        estep = chain.e_step()
        post = estep.posterior
        nz = post.weights > 0
        rows = torch.nonzero(nz, as_tuple=True)[0]
        xy = post.windows.cells.cpu()[chain.group.cpu()[rows], post.cells[nz]]
        if not pooled:
            chain._shared_crops = lambda bins, f: None
        n_pairs = sum(x.shape[0] for x, *_ in chain._pair_batches(rows, xy, post.weights[nz])())
        assert n_pairs < 0.5 * rows.numel() if pooled else n_pairs == rows.numel()
        chain.m_step(estep)
        fitted.append((chain.response.rf.detach().clone(), float(chain.tracker.sigma)))
    assert_same_fields(fitted[0][0], fitted[1][0])
    assert fitted[0][1] == pytest.approx(fitted[1][1], rel=1e-8)
