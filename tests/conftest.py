"""Shared fixtures: small simulated sessions."""

import pytest

from gazeem.simulate import simulate_session

TINY = dict(
    n_bins=40,
    stim_rows=12,
    stim_cols=12,
    n_units=2,
    patch_size=4,
    n_lags=2,
    lag_weights=(1.0, 0.5),
    rf_sigma_px=(1.0, 1.5),
    rf_spread_px=0.5,
    fixation_bins=(3, 5),
    saccade_bins=(1, 2),
    gaze_range_px=2.0,
    tracker_sigma_px=1.0,
    tracker_offset_px=(0.5, -0.5),
    blink_prob=0.2,
    blink_bins=(2, 3),
    ppd=4.0,
)

SMALL = dict(
    n_bins=1500,
    stim_rows=40,
    stim_cols=40,
    n_units=8,
    patch_size=12,
    rf_sigma_px=(1.5, 2.2),
    rf_spread_px=1.0,
    gaze_range_px=8.0,
    tracker_sigma_px=2.0,
    ppd=10.0,
)


@pytest.fixture
def tiny_session():
    return simulate_session(seed=5, **TINY)


@pytest.fixture
def small_session():
    return simulate_session(seed=7, **SMALL)
