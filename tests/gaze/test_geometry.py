"""Receptive fields away from the gaze point, and a tracker gain that a translation
cannot distort: the fit does not depend on where on the screen things sit."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from gazeem.coords import spread_rounding
from gazeem.gaze.batches import Batches
from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.estimator import GazeEM
from gazeem.gaze.settings import MemoryBudget
from gazeem.gaze.windows import Windows, make_windows, pinned_cells
from gazeem.models import PoissonLN, TrackerModel
from gazeem.models.observation import TrackerStats
from tests.conftest import make_session

IDENTITY = ((1.0, 0.0), (0.0, 1.0))


def test_patch_is_cut_at_the_gaze_plus_the_fields_offset(small_session):
    data = GazeData.from_dataset(small_session, torch.device("cpu"), torch.float64)
    moved = dataclasses.replace(
        data, geometry=dataclasses.replace(data.geometry, rf_offset_deg=(0.7, -0.4))
    )
    ox, oy = moved.geometry.rf_offset_px
    assert (ox, oy) == (7, 4)  # ppd 10; y down in pixels
    resp = PoissonLN(8, 12).double()
    n_fix = data.n_fixations
    cells = torch.randint(0, 40, (n_fix, 9, 2), generator=torch.Generator().manual_seed(0))
    keep = torch.ones(n_fix, 9, dtype=torch.bool)
    budget = MemoryBudget()
    at_offset = list(Batches(moved, resp, budget).pair_chunks(keep, cells))
    shifted = list(Batches(data, resp, budget).pair_chunks(keep, cells + torch.tensor([ox, oy])))
    for (x1, b1, *_), (x2, b2, *_) in zip(at_offset, shifted, strict=True):
        assert torch.equal(b1, b2) and torch.equal(x1, x2)
    win = Windows(1, cells[:, 0], cells, torch.zeros(n_fix, 9, dtype=torch.int64), keep)
    bins = data.fit_bins[:50]
    f = data.fixation[bins]
    c1 = Batches(moved, resp, budget).crops_of(win, bins, f)
    win2 = dataclasses.replace(win, centers=win.centers + torch.tensor([ox, oy]))
    assert torch.equal(c1, Batches(data, resp, budget).crops_of(win2, bins, f))


def test_tracker_gain_is_anchored_at_the_mean_reading():
    """A common translation of gaze and readings moves ``b``, never ``A`` or ``σ``."""
    rng = np.random.default_rng(0)
    z = torch.as_tensor(rng.normal(0, 6, size=(300, 1, 2)))
    a_true = torch.tensor([[1.04, 0.03], [-0.02, 0.96]], dtype=torch.float64)
    r = (z[:, 0] @ a_true.T) + torch.as_tensor(rng.normal(0, 2, size=(300, 2)))
    w = torch.ones(300, 1, dtype=torch.float64)
    fits = []
    for t in (torch.zeros(2, dtype=torch.float64), torch.tensor([40.0, -25.0])):
        tr = TrackerModel(learn_gain=True, learn_offset=True, anchor=(r + t).mean(0))
        tr.m_step(TrackerStats.from_weighted(r + t, z + t, w))
        fits.append(tr)
    torch.testing.assert_close(fits[1].gain, fits[0].gain, rtol=0, atol=1e-12)
    assert fits[1].sigma == pytest.approx(fits[0].sigma, rel=1e-12)
    torch.testing.assert_close(fits[1].offset, fits[0].offset, rtol=0, atol=1e-9)
    # and the round trip: the gaze implied by a reading is where it was
    torch.testing.assert_close(fits[0].invert(fits[0].predict(z[:, 0])), z[:, 0])


@pytest.mark.slow
def test_fit_does_not_depend_on_where_the_fields_are():
    """The same recording with the fields 30 px right and 20 px up of the gaze (the gaze
    then wanders off the stimulus, the fields stay on it): the fit is the same, moved."""
    kw = dict(patch_size=12, max_iter=4, window_k=3.0, dtype="float64", device="cpu")
    a = make_session("small", seed=7, tracker_gain=IDENTITY)
    b = make_session("small", seed=7, tracker_gain=IDENTITY, rf_offset_px=(30.0, -20.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa, fb = GazeEM(**kw).fit(a), GazeEM(**kw).fit(b)
    # float64 and L-BFGS stopping at 1e-6 relative: 1e-3 px is 1/1000 of a cell
    moved = fb.gaze_per_bin()["mean"] + [30.0, -20.0]
    np.testing.assert_allclose(moved, fa.gaze_per_bin()["mean"], atol=1e-3)
    np.testing.assert_allclose(fb.gain_, fa.gain_, atol=1e-5)
    assert fb.sigma_ == pytest.approx(fa.sigma_, rel=1e-5)
    # the two fits differ only where L-BFGS stops (2e-4 nats with 1 thread, less with 2):
    # 0.01 nats is 50x below 0.5 nats, the smallest difference a model comparison notices
    assert fb.loglik_[-1] == pytest.approx(fa.loglik_[-1], abs=0.01)
    np.testing.assert_allclose(fb.rf_, fa.rf_, atol=1e-4)


@pytest.mark.slow
def test_fields_gauge_recovers_the_tracker_like_an_oracle():
    """Fields 30 px right and 20 px up of the gaze, a tracker offset of (5, -4) px, an
    identity gain: the tracker comes out as an oracle that knows the true gaze gets it,
    the gaze in absolute terms, and EM converges well before max_iter."""
    from gazeem.coords import StimulusGeometry
    from gazeem.gaze.data import GazeGrid
    from gazeem.gaze.fixation import FixationProblem
    from gazeem.gaze.settings import ProblemSettings, WindowSettings
    from gazeem.models import UniformPrior

    s = make_session(
        "small",
        seed=11,
        n_bins=3000,
        n_units=16,
        tracker_gain=IDENTITY,
        tracker_offset_px=(5.0, -4.0),
        rf_offset_px=(30.0, -20.0),
        gaze_range_px=10.0,
    )
    geom = StimulusGeometry.from_dataset(s)
    true_px = geom.deg_to_px(s["true_gaze"].values)
    est = GazeEM(patch_size=12, window_k=3.0, max_iter=40, device="cpu").fit(s)
    assert est.offset_mode_ == "fields" and est.converged_ and est.n_iter_ < 40

    # oracle 1: the tracker regressed on the true gaze (per-fixation means)
    data = GazeData.from_dataset(s, torch.device("cpu"), torch.float64)
    fix = s["fixation"].values
    ids = np.unique(fix[fix >= 0])
    z = np.array([true_px[fix == f].mean(0) for f in ids])
    r = np.array([geom.deg_to_px(s["eye"].values)[fix == f].mean(0) for f in ids])
    coef, *_ = np.linalg.lstsq(np.c_[z, np.ones(len(z))], r, rcond=None)
    sigma_oracle = np.sqrt(((r - np.c_[z, np.ones(len(z))] @ coef) ** 2).sum() / (2 * len(z)))
    # the oracle's own gain error is ~σ/(gaze SD √fixations) = 2/(5.5·√128) ≈ 0.03; EM and
    # the oracle see the same noise, so they should agree much more closely than that
    np.testing.assert_allclose(est.gain_, coef[:2].T, atol=0.03)
    assert est.sigma_ == pytest.approx(sigma_oracle, rel=0.05)

    # oracle 2: an E-step with the true fields and tracker
    resp = PoissonLN(16, 12).double()
    with torch.no_grad():
        resp.rf.copy_(torch.as_tensor(s["true_rf"].values))
        resp.bias.copy_(torch.as_tensor(s["true_bias"].values))
    tracker = TrackerModel(sigma=2.0, offset=torch.tensor([5.0, -4.0], dtype=torch.float64))
    ox, oy = geom.rf_offset_px
    grid = GazeGrid(-ox, 39 - ox, -oy, 39 - oy)
    settings = ProblemSettings(window=WindowSettings(k=3.0))
    prob = FixationProblem(data, grid, tracker, UniformPrior(grid.n_cells), resp, None, settings)
    oracle_mean = prob.e_step().posterior.per_bin(data, tracker)["mean"]

    def rms(mean):
        d = mean - true_px
        ok = np.isfinite(d).all(1)
        return float(np.sqrt((d[ok] ** 2).sum(1).mean()))

    fitted = est.gaze_per_bin()["mean"]
    assert rms(fitted) <= 1.5 * rms(oracle_mean), (rms(fitted), rms(oracle_mean))
    raw = geom.deg_to_px(s["eye"].values)
    assert rms(fitted) < 0.25 * rms(np.where(np.isfinite(fitted), raw, np.nan))


def test_spread_rounding_is_unbiased_over_repeats():
    """Whole pixels whose mean over n repeats is within 1/n of any position; a whole
    pixel stays put (a half pixel reached through a conversion included)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-50, 50, size=(200, 2))
    for n in (2, 4, 8, 16):
        cells = spread_rounding(np.repeat(x[None], n, 0), np.arange(n)[:, None])
        assert np.abs(cells.mean(0) - x).max() <= 1 / n + 1e-12
        assert set(np.unique(cells - np.floor(x))) <= {0, 1}
    assert np.all(spread_rounding(np.full((5, 2), 7.0 - 1e-9), np.arange(5)) == 7)
    assert spread_rounding(np.array([[0.1 * 3 / 0.2, 2.5]]), np.array([1])).tolist() == [[2, 3]]


def test_calibration_targets_between_pixels_are_pinned_on_both_sides():
    """A 3×3 grid of targets on pixel edges: the fixations on each target are pinned
    half on each side, so their mean cell is the target (rounding put all on one side);
    targets on pixel centres are pinned on them."""
    for edges in (True, False):
        ds = make_session("small", seed=3, n_calibration=36, calibration_on_pixel_edges=edges)
        data = GazeData.from_dataset(ds, torch.device("cpu"), torch.float64)
        target = data.fix_calib[data.is_calibration].numpy() + data.geometry.center_px
        assert np.all(np.abs(target % 1 - 0.5) < 1e-6) if edges else np.all(target % 1 == 0)
        cells = pinned_cells(data).numpy()
        assert np.all(np.abs(cells - target) <= 0.5 + 1e-6)
        for t in np.unique(target, axis=0):
            on = np.all(target == t, axis=1)
            assert np.abs(cells[on].mean(0) - t).max() <= 0.5 / on.sum() + 1e-9
        tracker = TrackerModel(sigma=3.0)
        grid = GazeGrid(-20, 83, -20, 83)
        win = make_windows(data, tracker, grid, 4)
        cal = data.is_calibration
        assert torch.all(win.support[cal].sum(1) == 1)
        assert torch.equal(win.cells[cal][win.support[cal]], torch.from_numpy(cells))
