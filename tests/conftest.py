"""Shared fixtures, and the one factory of simulated sessions (tests and benchmarks).

``make_session(preset, seed, **overrides)`` simulates a session from a named preset of
:class:`gazeem.simulate.SimulationConfig` settings; the benchmarks import it too, so a
workload is written once.
"""

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

#: demo-like receptive fields: Gabors of 1.8–2.6 px spread 1.5 px about the patch centre
FIELDS = dict(rf_sigma_px=(1.8, 2.6), rf_spread_px=1.5)

PRESETS = {
    "tiny": TINY,
    "small": SMALL,
    # the E-step's reference workload: 128 px frames held 4 bins, 32 px fields, 41x41 windows
    "reference": dict(
        n_bins=20000,
        n_units=32,
        patch_size=32,
        stim_rows=128,
        stim_cols=128,
        frame_hold=4,
        rf_sigma_px=(2.5, 4.0),
        rf_spread_px=3.0,
        gaze_range_px=30.0,
        fixation_bins=(15, 25),
        tracker_sigma_px=5.0,
        blink_prob=0.0,
    ),
    # white noise, 64x64 px, 100 units, one bin per frame at 60 Hz (long-session benchmarks)
    "noise": dict(n_units=100, stim_rows=64, stim_cols=64, patch_size=16, **FIELDS),
    "demo": dict(n_units=20, patch_size=16, stim_rows=48, stim_cols=48, **FIELDS),
}


def make_session(preset: str, seed: int = 0, **overrides):
    """A simulated session from ``PRESETS[preset]``, with ``overrides`` on top."""
    return simulate_session(**{**PRESETS[preset], **overrides, "seed": seed})


@pytest.fixture
def tiny_session():
    return simulate_session(seed=5, **TINY)


@pytest.fixture
def small_session():
    return simulate_session(seed=7, **SMALL)
