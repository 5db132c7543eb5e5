"""Issue 18: a fixation task, fitted in both latents, against the truth.

67 s at 60 Hz, 48 units, binary noise: trials of 1-10 s on a fixation spot with
fixational drift (D = 20 arcmin²/s) and corrective microsaccades (1.5 per second,
0.1-0.5°, minimum-jerk movements of 12-22 ms), a blink between trials; the tracker samples
at 1000 Hz (17 samples a bin) with 0.3 px noise per sample, and its error is 3 px per
axis, constant over each trial, with a (5, -4) px calibration offset. Written to NWB and
ingested, where the sample detector (Engbert & Kliegl) cuts the 11 trials into 83
fixations at the microsaccades it finds.
"""

import numpy as np
import pytest
import torch

from gazeem.coords import StimulusGeometry
from gazeem.gaze.checks import choose_latent, within_fixation_drift
from gazeem.gaze.data import GazeData
from gazeem.gaze.estimator import GazeEM
from tests.conftest import make_session
from tests.gaze.realistic import (
    TWO_MINUTES,
    coverage,
    interval_coverage,
    oracle_tracker,
    rms,
    sd_over_error,
    through_nwb,
    true_px,
)

pytestmark = pytest.mark.slow

TASK = {
    **TWO_MINUTES,
    "n_bins": 4000,
    "stim_rows": 64,
    "stim_cols": 64,
    "task": "fixation",
    "eye_rate_hz": 1000.0,
}


def field_correlation(rf: np.ndarray, truth: np.ndarray) -> float:
    """Median correlation of fitted with true fields after the best common shift (±2 px)."""
    best = -1.0
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            r = np.roll(rf, (dy, dx), axis=(-2, -1))
            c = [np.corrcoef(r[i].ravel(), truth[i].ravel())[0, 1] for i in range(len(truth))]
            best = max(best, float(np.median(c)))
    return best


@pytest.fixture(scope="module", params=[0.0, 0.5], ids=["constant", "drifting"])
def task_session(request, tmp_path_factory):
    """The tracker error constant over each trial, or also drifting (0.5 px per √s)."""
    sim = make_session("small", seed=4, tracker_drift_px_s=request.param, **TASK)
    session = through_nwb(sim, tmp_path_factory.mktemp("task"))
    return sim, session


@pytest.fixture(scope="module", params=["bin", "fixation"])
def task_fit(request, task_session):
    sim, session = task_session
    est = GazeEM(patch_size=20, max_iter=60, device="cpu", latent=request.param, learn_gain=False)
    return sim, session, est.fit(session)


def test_auto_picks_the_latent_that_follows_the_tracker(task_session):
    """The eye drifts about 1 px RMS about each fixation's mean and the 1 kHz tracker,
    averaged over a bin, follows all of it (measured 1.00 px, 0.00 px left unfollowed):
    ``latent: auto`` picks the per-fixation latent, which reads that motion from the
    tracker and goes sub-pixel (0.20 and 0.37 px below, against the chain's 0.56 and
    0.54 px, which takes the motion from the spikes on a whole-pixel grid)."""
    _, session = task_session
    data = GazeData.from_dataset(session, torch.device("cpu"), torch.float32)
    drift = within_fixation_drift(data)
    assert drift.rms > 0.5 and drift.unresolved < 0.1
    assert choose_latent(data, "exact", "uniform")[0] == "fixation"


#: RMS distance (px) of a whole-pixel answer from a truth spread evenly within the pixel
WHOLE_PIXEL_RMS = np.sqrt(2 / 12)


def test_per_fixation_gaze_is_sub_pixel(request, task_fit):
    """Bins that follow the eye within a fixation resolve its position below a pixel.

    Measured: 0.20 px (constant tracker error) and 0.37 px (drifting), scored with
    cross-fitted fields (0.22 and 0.39 px with EM's own fields); before the bins
    followed the eye, 0.75 and 0.85 px; the per-bin chain 0.56 and 0.54 px.
    """
    _, session, est = task_fit
    if est.latent_ != "fixation":
        pytest.skip("the per-fixation latent")
    err = rms(est.gaze_per_bin()["mean"], true_px(session))
    drifting = request.node.callspec.params["task_session"] > 0
    # the tracker's own drift within a fixation is taken for the eye's motion: there the
    # bound is the per-bin chain's error on the same session (0.54 px)
    assert err <= (0.75 if not drifting else 1.25) * WHOLE_PIXEL_RMS


def test_corrected_and_never_worse_than_raw(task_fit):
    _, session, est = task_fit
    truth = true_px(session)
    gaze = est.gaze_per_bin()
    fitted = np.isfinite(gaze["mean"]).all(1)
    raw = StimulusGeometry.from_dataset(session).deg_to_px(session["eye"].values)
    raw = np.where(fitted[:, None], raw, np.nan)
    assert rms(gaze["mean"], truth) <= 0.5 * rms(raw, truth)
    assert est.fit_.heldout.supported and est.fit_.heldout.agreement > 0.9
    # σ: the error of the readings the test simulated (regressed on the true gaze,
    # one observation per detected fixation), not collapsed onto the raw trace
    _, _, sigma_oracle = oracle_tracker(session)
    assert est.sigma_ == pytest.approx(sigma_oracle, rel=0.10)
    print(
        f"{est.latent_}: rms {rms(gaze['mean'], truth):.3f} raw {rms(raw, truth):.3f}, "
        f"sigma {est.sigma_:.2f} (oracle {sigma_oracle:.2f}), {est.n_iter_} iterations"
    )


def test_converges_in_under_40_iterations(task_fit):
    # the per-bin chain needed 24 and 60+ iterations before the gauge was held at every
    # M-step (it crept along the common shift of gaze and fields; docs/performance.md)
    _, _, est = task_fit
    assert est.converged_ and est.n_iter_ < 40


def test_calibrated(request, task_fit):
    """95% intervals cover 90-98% of bins, 68% intervals 60-76%, and the median SD is
    within 1.5x of the per-axis RMS error (issue 14).

    Per fixation, sub-pixel, constant tracker error: 92.3% and 62.8% (77.2% and 43% with
    EM's own fields; cross-fitting and the fields' noise, ``gazeem.gaze.crossfit``).
    """
    _, session, est = task_fit
    truth = true_px(session)
    gaze = est.gaze_per_bin()
    cov = interval_coverage(gaze, truth, 0.95)
    cov68 = interval_coverage(gaze, truth, 0.68)
    sd_ratio = sd_over_error(gaze["mean"], gaze["sd"], truth)
    sd_cov = coverage(gaze["mean"], gaze["sd"], truth, 1.96)
    print(
        f"{est.latent_}: coverage {cov:.3f}, 68%: {cov68:.3f}, median SD / RMS {sd_ratio:.2f} "
        f"(mean ± 1.96 SD: {sd_cov:.3f})"
    )
    assert 0.90 <= cov <= 0.98
    assert 0.60 <= cov68 <= 0.76
    assert 1 / 1.5 <= sd_ratio <= 1.5


def test_fields_recovered(task_fit):
    # per fixation 0.887 before the bins followed the eye's motion, 0.916 after
    sim, _, est = task_fit
    assert field_correlation(est.fit_.rf, sim["true_rf"].values) >= 0.9


def test_penalties_chosen_by_cross_validation(task_session):
    """``smooth: cv`` and ``l2: cv`` (issue 14): the held-out spikes choose 111 nats of
    smoothness over the default 1000 on both sessions, and the fields come out sharper
    (measured with ``smooth: cv`` alone 0.946 and 0.944 against 0.916 at 1000) without
    losing the calibration (93.6% and 92.6%). The ridge, chosen after it, goes from 10
    nats to 0.37 and 1.1, each less than a nat above its neighbours: it hardly matters
    once the smoothness is chosen (with both: fields 0.946 and 0.944, 93.3% and 92.6%)."""
    sim, session = task_session
    est = GazeEM(
        patch_size=20,
        max_iter=60,
        device="cpu",
        latent="fixation",
        learn_gain=False,
        smooth="cv",
        l2="cv",
    ).fit(session)
    fit = est.fit_
    assert fit.smooth == fit.smooth_cv.values[np.argmax(fit.smooth_cv.heldout)] < 1000
    assert fit.l2 == fit.l2_cv.values[np.argmax(fit.l2_cv.heldout)]
    assert est.converged_ and est.n_iter_ < 40
    assert field_correlation(fit.rf, sim["true_rf"].values) >= 0.93
    assert 0.90 <= interval_coverage(est.gaze_per_bin(), true_px(session), 0.95) <= 0.98
    ds = est.to_dataset(session)
    assert ds.attrs["smooth_final"] == fit.smooth and ds.attrs["l2_final"] == fit.l2
    for name in ("smooth", "l2"):
        assert len(ds.attrs[f"{name}_cv_heldout_nats"]) == len(ds.attrs[f"{name}_cv_values"])


def test_what_the_posterior_adds_is_recorded(request, task_fit):
    """The terms the per-fixation posterior adds after EM (issue 14) are in the result,
    with their values: the fields' noise, a few hundredths of a px² (measured 0.003-0.005;
    a refined cell is 0.25 px wide), and the tracker's drift within a fixation against the
    simulated 0.5² px²/s (0.0042 px² per bin: measured 0.0038; constant error: 0)."""
    _, session, est = task_fit
    ds = est.to_dataset(session)
    terms = ("field_noise_px2_subpixel", "field_noise_px2_whole", "tracker_drift_px2_per_bin")
    if est.latent_ != "fixation":
        assert ds.attrs["n_subpixel"] == 0 and all(np.isnan(ds.attrs[k]) for k in terms)
        return
    n_fix = int((~est.fixation_summary()["calibration"]).sum())
    assert 0.9 * n_fix <= ds.attrs["n_subpixel"] <= n_fix
    for k in terms[:2]:
        assert 0 < ds.attrs[k] < 0.02
    drift = request.node.callspec.params["task_session"] ** 2 / 60  # px² per bin at 60 Hz
    if drift:
        assert drift / 2 <= ds.attrs["tracker_drift_px2_per_bin"] <= 2 * drift
    else:
        assert ds.attrs["tracker_drift_px2_per_bin"] < 0.001
