"""Issue 13: real experimental geometry, judged against oracles that know the truth.

Each session is 2 minutes at 60 Hz with 48 units at 8–30 Hz, written to NWB with pynwb
and ingested from that file (:mod:`tests.gaze.realistic`), then fitted with the defaults
but for the patch size. The fields sit off the reported gaze point, the tracker has a
calibration offset, and the gaze wanders off the stimulus centre.
"""

import numpy as np
import pytest

from gazeem.coords import StimulusGeometry
from gazeem.figures import fig_reliability, interval_coverage
from gazeem.gaze.estimator import GazeEM
from tests.conftest import make_session
from tests.gaze.realistic import (
    IDENTITY,
    OFFSET_SESSION,
    TWO_MINUTES,
    coverage,
    oracle_gaze,
    oracle_tracker,
    rms,
    sd_over_error,
    through_nwb,
    true_px,
)
from tests.gaze.realistic import interval_coverage as interval_coverage_px

pytestmark = pytest.mark.slow


def fit(session):
    return GazeEM(patch_size=20, max_iter=60, device="cpu").fit(session)


def raw_px(session) -> np.ndarray:
    return StimulusGeometry.from_dataset(session).deg_to_px(session["eye"].values)


@pytest.fixture(scope="module")
def offset_session(tmp_path_factory):
    """Fields 7.8 px from the reported gaze point (6 right, 5 up), a (5, -4) px offset.

    The gain's precision is bounded by σ / (gaze SD · √fixations) whatever the method: with
    the gaze uniform over ±45 px (SD 26 px) and ~470 fixations of 8-20 bins that is 0.005,
    so the issue's 2% is 4 standard errors (at ±20 px and 300 fixations it was 1.3).
    """
    sim = make_session("small", seed=1, **TWO_MINUTES, **OFFSET_SESSION)
    session = through_nwb(sim, tmp_path_factory.mktemp("offset"))
    return sim, session, fit(session)


def test_tracker_gain_and_sigma_come_out_right(offset_session):
    _, session, est = offset_session
    a_oracle, _, sigma_oracle = oracle_tracker(session)
    # the bound first: the oracle regression on the true gaze reaches the 2%
    np.testing.assert_allclose(a_oracle, IDENTITY, atol=0.02)
    np.testing.assert_allclose(est.gain_, IDENTITY, atol=0.02)
    assert est.sigma_ == pytest.approx(3.0, rel=0.10)
    assert est.sigma_ == pytest.approx(sigma_oracle, rel=0.05)
    assert est.converged_ and est.n_iter_ < 40
    assert np.max(est.gain_se_) < 0.01


def test_offset_and_gaze_like_an_oracle(offset_session):
    sim, session, est = offset_session
    truth = true_px(session)
    fitted = est.gaze_per_bin()["mean"]
    oracle = oracle_gaze(session, sim, 20)
    assert rms(fitted, truth) <= 1.5 * rms(oracle, truth), (rms(fitted, truth), rms(oracle, truth))
    # issue 18: the held-out check finds the correction supported, by far
    assert est.fit_.heldout.supported and est.fit_.heldout.z > 5
    assert est.fit_.heldout.agreement > 0.9  # the spikes alone find the tracker's gaze
    # the absolute gaze: the fields gauge puts b within half a pixel of the truth
    np.testing.assert_allclose(est.offset_, [5.0, -4.0], atol=0.5)
    raw = np.where(np.isfinite(fitted), raw_px(session), np.nan)
    assert rms(fitted, truth) < 0.2 * rms(raw, truth)
    # issue 14: the SD includes the spread within a cell, so the 95% interval is honest
    # (measured 96.9%; without the cell's spread 4.9%, a median SD of 0.001 px)
    sd = est.gaze_per_bin()["sd"]
    assert 0.90 <= coverage(fitted, sd, truth, 1.96) <= 0.98
    assert 1 / 1.5 <= sd_over_error(fitted, sd, truth) <= 1.5


@pytest.mark.parametrize(("seed", "latent", "edges"), [(1, "fixation", False), (2, "bin", True)])
def test_calibration_fixations_fix_the_absolute_offset(tmp_path, seed, latent, edges):
    """Issue 13's calibration case: the offset session with 60 fixations on a 3×3 grid
    of known targets (57 detected), ``offset: auto`` (so ``calibration``): ``b`` within
    0.5 px of the truth, on two seeds, both latents, and targets on pixel centres or on
    pixel edges (``calibration_on_pixel_edges``: each bin shown on one side or the other).

    The bound first: calibration alone gives ``b`` to σ/√57 = 0.4 px a coordinate, and the
    oracle regression of the readings on the true gaze of every fixation reaches 0.25 px
    (measured 0.27 and 0.25). EM measured 0.26 px (seed 1, per fixation) and 0.28 px
    (seed 2, per bin, on edges). Before the simulator put each target on a pixel's
    centre, np.rint showed every target half a pixel off in y (parity) and EM followed
    that to 0.75 and 1.08 px.
    """
    sim = make_session(
        "small",
        seed=seed,
        **TWO_MINUTES,
        **OFFSET_SESSION,
        n_calibration=60,
        calibration_on_pixel_edges=edges,
    )
    session = through_nwb(sim, tmp_path)
    est = GazeEM(patch_size=20, max_iter=60, device="cpu", latent=latent).fit(session)
    truth_b = np.asarray(sim.attrs["true_offset_px"])
    _, b_oracle, _ = oracle_tracker(session)
    assert np.linalg.norm(b_oracle - truth_b) < 0.5  # the bound
    assert est.offset_mode_ == "calibration" and est.latent_ == latent
    assert np.linalg.norm(est.offset_ - truth_b) < 0.5, est.offset_
    assert est.converged_ and est.n_iter_ < 40
    truth, fitted = true_px(session), est.gaze_per_bin()["mean"]
    oracle = oracle_gaze(session, sim, 20)
    assert rms(fitted, truth) <= 1.5 * rms(oracle, truth), (rms(fitted, truth), rms(oracle, truth))


def test_reliability_checked_in_the_product(offset_session):
    """Issue 14: the fit result carries what the report's reliability figure draws: the
    intervals' coverage of the truth (the same numbers as the tests'), and a held-out
    posterior-predictive check in which the corrected model's spike counts look as
    predicted more closely than the raw trace's (measured total-variation distance
    0.022 against 0.044)."""
    _, session, est = offset_session
    ds = est.to_dataset(session)
    cov = interval_coverage(ds)
    gaze, truth = est.gaze_per_bin(), true_px(session)
    for level, observed in zip(cov["levels"], cov["observed"], strict=True):
        assert observed == pytest.approx(interval_coverage_px(gaze, truth, level), abs=1e-9)
    assert 0.90 <= cov["observed"][-1] <= 0.98
    tv_raw, tv_corr = ds.attrs["heldout_ppc_tv_raw"], ds.attrs["heldout_ppc_tv_corrected"]
    assert tv_corr < 0.7 * tv_raw
    assert ds["ppc_pairs"].sum() == 2 * ds["ppc_pairs"].sel(ppc_source="raw").sum()
    fig = fig_reliability(ds)
    assert len(fig.axes) == 3 and all(ax.lines for ax in fig.axes)


def test_parafoveal_fixation_spot(tmp_path):
    """Fields 3 deg right of and 1 deg above the fovea (60, 20 px at 20 px/deg); the
    stimulus sits over the fields, the eye on a fixation spot (±4 px) with drift and
    microsaccades between fixations of 0.3–1 s."""
    sim = make_session(
        "small",
        seed=2,
        **TWO_MINUTES,
        stim_rows=64,
        stim_cols=64,
        rf_offset_px=(60.0, -20.0),
        gaze_range_px=4.0,
        fixation_bins=(20, 60),
        saccade_bins=(1, 2),
        drift_px_per_bin=0.1,
    )
    session = through_nwb(sim, tmp_path)
    # the gaze is off the stimulus: only the fields' region lies on it
    off = np.abs(raw_px(session) - np.asarray(StimulusGeometry.from_dataset(session).center_px))
    assert np.nanmean((off > 32).any(axis=1)) > 0.9
    with pytest.warns(UserWarning, match="gain is poorly determined"):
        est = fit(session)
    truth = true_px(session)
    fitted = est.gaze_per_bin()["mean"]
    oracle = oracle_gaze(session, sim, 20)
    assert rms(fitted, truth) <= 1.5 * rms(oracle, truth), (rms(fitted, truth), rms(oracle, truth))
    raw = np.where(np.isfinite(fitted), raw_px(session), np.nan)
    assert rms(fitted, truth) < 0.3 * rms(raw, truth)
    # a fixation spot cannot teach a gain: the fit says so
    assert np.max(est.gain_se_) > 0.05
