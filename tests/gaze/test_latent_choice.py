"""``latent: auto`` (issue 18): the per-bin chain where the eye moves within fixations."""

import math

import pytest
import torch

from gazeem.gaze.anneal import temperatures
from gazeem.gaze.checks import UNRESOLVED_RMS_FOR_BIN, choose_latent, within_fixation_drift
from gazeem.gaze.data import GazeData
from gazeem.gaze.estimator import GazeEM
from tests.conftest import make_session


def data_of(session):
    return GazeData.from_dataset(session, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("drift", [0.15, 0.3, 0.5])
def test_drift_is_measured_through_tracker_jitter(drift):
    """A random walk of step ``d`` per axis over ``n`` bins spreads about its mean by
    ``sqrt(2 d² n / 6)`` (2-D); the reading's white jitter (0.3 px a bin) must not count."""
    s = make_session("small", seed=3, n_bins=4000, drift_px_per_bin=drift, tracker_jitter_px=0.3)
    got = within_fixation_drift(data_of(s))
    spread = 2 * drift**2 * got.bins / 6
    assert got.rms == pytest.approx(math.sqrt(spread), rel=0.2)
    assert got.jitter == pytest.approx(math.sqrt(2 * 0.3**2), rel=0.2)
    # what the per-fixation latent's Wiener weight leaves unfollowed
    left = spread * 2 * 0.3**2 / (spread + 2 * 0.3**2)
    assert got.unresolved == pytest.approx(math.sqrt(left), rel=0.2)


def test_auto_takes_the_chain_only_where_the_eye_moves_unseen():
    """The chain where the eye moves more than the reading resolves; the per-fixation
    latent, which follows the reading's motion, where the eye is still or the tracker sees
    the motion (a quiet tracker: the fixation task's 1 kHz samples averaged per bin)."""
    still = data_of(make_session("small", seed=3, drift_px_per_bin=0.0, tracker_jitter_px=0.5))
    moving = data_of(make_session("small", seed=3, drift_px_per_bin=0.3))
    seen = data_of(make_session("small", seed=3, drift_px_per_bin=0.3, tracker_jitter_px=0.02))
    assert within_fixation_drift(still).rms < 0.1
    assert within_fixation_drift(still).unresolved < 0.1 < UNRESOLVED_RMS_FOR_BIN
    assert choose_latent(still, "exact", "uniform")[0] == "fixation"
    latent, why = choose_latent(moving, "exact", "uniform")
    assert latent == "bin" and "drifts 0.8" in why
    drift = within_fixation_drift(seen)
    assert drift.rms > 0.7 and drift.unresolved < 0.05
    latent, why = choose_latent(seen, "exact", "uniform")
    assert latent == "fixation" and "drifts 0.8" in why
    # the chain needs the exact E-step and a fixed prior: auto falls back and says so
    latent, why = choose_latent(moving, "fast", "uniform")
    assert latent == "fixation" and "estep=fast" in why


def test_the_fit_records_which_latent_and_why():
    s = make_session("tiny", seed=1)
    est = GazeEM(patch_size=4, max_iter=1, device="cpu", learn_gain=False).fit(s)
    ds = est.to_dataset(s)
    assert ds.attrs["latent"] == est.latent_ == "fixation"
    assert ds.attrs["latent_reason"].startswith("auto: the tracker trace drifts")
    # noise: a new frame every bin, so anneal: auto does not anneal, and says why
    assert ds.attrs["anneal_steps"] == 0
    assert (
        ds.attrs["anneal_reason"] == "auto: the stimulus changes within fixations (no held frames)"
    )
    est = GazeEM(
        patch_size=4, max_iter=1, device="cpu", latent="fixation", learn_gain=False, anneal=True
    )
    est.fit(s)
    ds = est.to_dataset(s)
    assert ds.attrs["latent_reason"] == "set: latent=fixation"
    assert ds.attrs["anneal_steps"] == len(temperatures()) == 16
    assert ds.attrs["anneal_reason"] == "set: anneal=true"
    # max_iter 0 evaluates the starting parameters: nothing is annealed either
    est.set_params(max_iter=0).fit(s)
    assert est.fit_.anneal_steps == 0
