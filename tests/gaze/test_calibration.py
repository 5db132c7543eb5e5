"""Issue 14: a posterior SD and credible intervals a scientist can trust, checked
against the truth.

2-minute sessions with fixational drift, 48 units, written to NWB and ingested. The SD of
each bin's posterior includes the spread within a cell (the response sees the patch cut
at a cell, so the continuous gaze given a cell is uniform over it): without it the 95%
interval covered 49% of bins, the 68% interval 29%. The reported intervals
(``lower``/``upper``) are the posterior's own quantiles (:mod:`gazeem.gaze.intervals`):
``mean ± 1 SD`` of a posterior on one cell holds 58% of its mass, not 68%.
"""

import numpy as np
import pytest

from gazeem.gaze.estimator import GazeEM
from tests.conftest import make_session
from tests.gaze.realistic import (
    OFFSET_SESSION,
    TWO_MINUTES,
    coverage,
    interval_coverage,
    oracle_gaze,
    rms,
    sd_over_error,
    through_nwb,
    true_px,
)

pytestmark = pytest.mark.slow


def test_per_bin_intervals_cover_the_truth(tmp_path):
    sim = make_session("small", seed=1, **TWO_MINUTES, **OFFSET_SESSION, drift_px_per_bin=0.15)
    session = through_nwb(sim, tmp_path)
    est = GazeEM(patch_size=20, latent="bin", max_iter=60, device="cpu").fit(session)
    truth = true_px(session)
    g = est.gaze_per_bin()
    mean, sd = g["mean"], g["sd"]
    # measured: 96.6% and 66.5%, median SD 0.91 of the per-axis RMS error
    assert 0.90 <= coverage(mean, sd, truth, 1.96) <= 0.98
    assert 0.60 <= coverage(mean, sd, truth, 1.0) <= 0.76
    assert 1 / 1.5 <= sd_over_error(mean, sd, truth) <= 1.5
    # the reported intervals: measured 92.3% and 70.3%
    assert 0.90 <= interval_coverage(g, truth, 0.95) <= 0.98
    assert 0.60 <= interval_coverage(g, truth, 0.68) <= 0.76
    # with drift the per-bin chain beats an E-step that knows the truth but holds the
    # gaze still within a fixation (measured 0.48 against 0.62 px)
    assert rms(mean, truth) < rms(oracle_gaze(session, sim, 20), truth)
    assert est.converged_ and est.n_iter_ < 40
    assert np.isfinite(mean).mean() > 0.5


def test_per_fixation_intervals_cover_the_truth(tmp_path):
    """The per-fixation latent, where its still-eye assumption nearly holds (drift 0.05 px
    per bin): ``mean ± 1 SD`` covers only 60%, the reported 68% interval 68% (a
    whole-pixel posterior is not Gaussian: its quantiles, not its SD, make the interval)."""
    sim = make_session("small", seed=1, **TWO_MINUTES, **OFFSET_SESSION, drift_px_per_bin=0.05)
    session = through_nwb(sim, tmp_path)
    est = GazeEM(patch_size=20, latent="fixation", max_iter=60, device="cpu").fit(session)
    truth = true_px(session)
    g = est.gaze_per_bin()
    # measured: 93.8% and 68.1% (mean ± 1.96 SD and ± 1 SD: 97.8% and 59.7%), with the
    # fields' noise (0.0027 px² per axis) added; EM's posterior alone 91.7% and 68.0%
    assert 0.90 <= interval_coverage(g, truth, 0.95) <= 0.98
    assert 0.60 <= interval_coverage(g, truth, 0.68) <= 0.76
    assert coverage(g["mean"], g["sd"], truth, 1.0) < interval_coverage(g, truth, 0.68) - 0.04
    assert 1 / 1.5 <= sd_over_error(g["mean"], g["sd"], truth) <= 1.5
    assert est.converged_ and est.n_iter_ < 40


def test_per_fixation_intervals_where_small_saccades_are_slow(tmp_path):
    """The whole-fit benchmark's noise session (100 units, 64 px noise, 32 px per degree,
    drift 0.05 px per bin), where small saccades spread over three bins: with the
    velocity rule alone 21 of 309 fixations merged with their neighbour (seed 0), each
    scored at one cell, and the 95% interval covered 68% (10 minutes: 67.6%). Ingest's
    displacement rule (``slow_saccade_bins``) cuts them: measured on this seed 90.9% and
    68.3%, median SD 0.78 of the error, 0.536 px against the oracle's 0.557 (seeds 0
    and 1: 90.6% and 91.0%; 10 minutes: 91.6%). What is left is merges that the reading
    cannot show: the tracker's new error cancelled the gaze's step (reading steps under
    1.5 px for gaze steps of 4-8 px; half the squared error on seed 0)."""
    sim = make_session("noise", seed=2, n_bins=7200, ppd=32.0, stim_center_deg=(0.0, 0.0))
    session = through_nwb(sim, tmp_path)
    est = GazeEM(patch_size=16, latent="fixation", grid_margin_px=8, device="cpu").fit(session)
    truth = true_px(session)
    g = est.gaze_per_bin()
    assert 0.90 <= interval_coverage(g, truth, 0.95) <= 0.98
    assert 0.60 <= interval_coverage(g, truth, 0.68) <= 0.76
    assert 1 / 1.5 <= sd_over_error(g["mean"], g["sd"], truth) <= 1.5
    assert rms(g["mean"], truth) <= 1.3 * rms(oracle_gaze(session, sim, 16), truth)
    assert est.converged_ and est.n_iter_ < 40
