"""Issue 13: free viewing of photographs, judged against an oracle that knows the truth.

One minute of free viewing at 60 Hz, 48 units: six photographs (scikit-image's), each
held for 2 s, the stimulus (128 px) wider than the gaze range (±40 px); fields 7.8 px
from the reported gaze, a (5, -4) px calibration offset, 3 px tracker error per fixation.

The information is there: an oracle E-step with the true fields and tracker corrects
the gaze to about a third of the raw error. EM does not reach it. A static image gives
each fixation one patch, so EM's latent settles into a per-fixation *rate state* (a cell
whose predicted rates match the fixation's counts), which held-out bins of the same
fixation confirm. gazeem must then say so and report the raw trace with a wide SD (the
stated tracker error and the unconfirmed calibration), not a correction worse than the
tracker.

Annealing (``anneal: auto``, on for held frames) leads EM out of the raw trace's basin: on
this minute it learns the calibration offset and the tracker's σ, though not yet each
fixation's error; with more fixations it corrects each one: 1.36x the oracle at 4
minutes, 1.21x at 10 (the last test; docs/architecture.md).
"""

import numpy as np
import pytest

from gazeem.coords import StimulusGeometry
from gazeem.gaze.anneal import temperatures
from gazeem.gaze.estimator import GazeEM
from tests.conftest import make_session
from tests.gaze.realistic import (
    PHOTOGRAPH_SESSION,
    interval_coverage,
    oracle_gaze,
    oracle_tracker,
    rms,
    through_nwb,
    true_px,
)

pytestmark = pytest.mark.slow


def photographs(n_bins: int, folder):
    """``(sim, session, truth, raw)``: issue 13's free viewing of photographs for
    ``n_bins`` bins, through NWB; truth and raw trace in stimulus pixels."""
    sim = make_session("small", seed=1, **{**PHOTOGRAPH_SESSION, "n_bins": n_bins})
    # the frames change every 2 s: ingest at the simulation's bin, not the frame rate
    session = through_nwb(sim, folder, bin_s=sim.attrs["bin_s"])
    truth = true_px(session)
    raw = StimulusGeometry.from_dataset(session).deg_to_px(session["eye"].values)
    return sim, session, truth, raw


@pytest.fixture(scope="module")
def photographs_session(tmp_path_factory):
    return photographs(PHOTOGRAPH_SESSION["n_bins"], tmp_path_factory.mktemp("photo"))


def test_never_worse_than_the_tracker_and_says_so(photographs_session):
    sim, session, truth, raw = photographs_session
    oracle = rms(oracle_gaze(session, sim, 20), truth)
    # the bound first: with the true fields the responses locate the gaze
    assert oracle < 0.5 * rms(raw, truth)
    with pytest.warns(UserWarning, match="the latent fits each fixation's rates"):
        est = GazeEM(patch_size=20, max_iter=60, device="cpu").fit(session)
    gaze = est.gaze_per_bin()
    fitted = np.isfinite(gaze["mean"]).all(1)
    assert rms(gaze["mean"], truth) <= rms(np.where(fitted[:, None], raw, np.nan), truth) + 1e-9
    # the spikes alone rarely find the tracker's gaze
    assert not est.fit_.heldout.supported
    assert est.fit_.heldout.agreement < 0.5
    # the posterior says so: the raw trace's interval is as wide as its error, calibration
    # offset included (measured 95.9% and 61.2%: a symmetric interval about a reading
    # that is off by 1.5σ; with the stated 3 px alone it was 72% and 33%)
    assert np.nanmedian(gaze["sd"]) > 1.5 * est.sigma_init
    assert 0.90 <= interval_coverage(gaze, truth, 0.95) <= 0.98
    assert 0.58 <= interval_coverage(gaze, truth, 0.68) <= 0.76


def test_annealing_learns_the_calibration_and_sigma(photographs_session):
    _, session, truth, raw = photographs_session
    _, _, sigma_oracle = oracle_tracker(session)
    est = GazeEM(patch_size=20, max_iter=60, device="cpu", heldout_check=False).fit(session)
    assert est.fit_.anneal_steps == len(temperatures())
    assert est.fit_.anneal_reason.startswith("auto: the stimulus is held")
    gaze = est.gaze_per_bin()["mean"]
    err = gaze - truth
    ok = np.isfinite(err).all(1)
    # the raw trace is off by the (5, -4) px calibration (6.4 px); without annealing EM
    # kept it (7.27 px RMS, σ 4.9 px); annealed, the offset and σ come out (measured:
    # 0.9 px, 4.56 px RMS, σ 2.64 against the oracle's 3.0)
    assert np.linalg.norm(err[ok].mean(0)) < 1.5
    assert rms(gaze, truth) < 0.7 * rms(raw, truth)
    assert est.sigma_ == pytest.approx(sigma_oracle, rel=0.25)


@pytest.mark.xfail(strict=True, reason="one minute is too little for EM (issue 13)")
def test_em_corrects_like_the_oracle(photographs_session):
    sim, session, truth, _ = photographs_session
    est = GazeEM(patch_size=20, max_iter=60, device="cpu", heldout_check=False).fit(session)
    fitted = est.gaze_per_bin()["mean"]
    assert rms(fitted, truth) <= 1.3 * rms(oracle_gaze(session, sim, 20), truth)


def test_ten_minutes_correct_like_the_oracle(tmp_path):
    """Issue 13's bound, given the information it needs: ten minutes of the same viewing
    (300 presentations of the six photographs, ten times the fixations of one minute).

    The oracle's own error falls slowly with length (2.18, 2.64 and 2.53 px at 1, 4 and 10
    minutes: each fixation is still seen through 3 px of tracker error), EM's fast: 1.36x
    the oracle at 4 minutes, 1.21x at 10 (3.05 against 2.53 px, raw 7.64; 16 tempered
    steps and 22 iterations, heldout check off).
    """
    sim, session, truth, raw = photographs(36_000, tmp_path)
    oracle = rms(oracle_gaze(session, sim, 20), truth)
    est = GazeEM(patch_size=20, max_iter=60, device="cpu").fit(session)
    gaze = est.gaze_per_bin()["mean"]
    fitted = np.isfinite(gaze).all(1)
    print(f"EM {rms(gaze, truth):.3f} px, oracle {oracle:.3f}, raw {rms(raw, truth):.3f}")
    # the correction is confirmed on held-out spikes, so it is the one reported
    assert est.fit_.heldout.supported
    assert rms(gaze, truth) <= 1.3 * oracle
    assert rms(gaze, truth) < 0.5 * rms(np.where(fitted[:, None], raw, np.nan), truth)
    assert est.converged_ and est.n_iter_ < 40
    # issue 14: EM's whole-pixel posterior, widened by the fields' noise measured on
    # these fixations (gazeem.gaze.subpixel), is calibrated (measured 94.0% and 71.7%;
    # EM's posterior alone 84.6% by its 95% interval); the median SD is half the RMS
    # error, which a few fixations far off dominate (the 1.5x: not met here)
    assert 0.90 <= interval_coverage(est.gaze_per_bin(), truth, 0.95) <= 0.98
    assert 0.60 <= interval_coverage(est.gaze_per_bin(), truth, 0.68) <= 0.76
