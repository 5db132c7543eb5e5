"""Shared fixtures, and the one factory of simulated sessions (tests and benchmarks).

``make_session(preset, seed, **overrides)`` simulates a session from a named preset of
:class:`gazeem.simulate.SimulationConfig` settings; the benchmarks import it too, so a
workload is written once.
"""

import functools

import numpy as np
import pytest

from gazeem.simulate import simulate_session

#: photographs that scikit-image ships inside its wheel (no download): scenes, animals,
#: objects and textures, so that local contrast and spatial frequency vary as in a lab's
#: natural-image sets
PHOTOGRAPHS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "grass", "brick", "moon")


@functools.cache
def photographs(rows: int = 128, cols: int = 128) -> np.ndarray:
    """``(8, rows, cols)`` grey-level photographs in [0, 1], centre-cropped to the aspect
    ratio and resized with anti-aliasing."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    out = []
    for name in PHOTOGRAPHS:
        img = getattr(skimage.data, name)()
        img = rgb2gray(img) if img.ndim == 3 else img / 255.0
        h, w = img.shape
        scale = min(h / rows, w / cols)
        ch, cw = int(rows * scale), int(cols * scale)
        top, left = (h - ch) // 2, (w - cw) // 2
        out.append(resize(img[top : top + ch, left : left + cw], (rows, cols), anti_aliasing=True))
    return np.stack(out)


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
    """A simulated session from ``PRESETS[preset]``, with ``overrides`` on top.

    ``stimulus="images"`` without ``images`` shows :func:`photographs` of the stimulus size.
    """
    kw = {**PRESETS[preset], **overrides, "seed": seed}
    if kw.get("stimulus") == "images" and kw.get("images") is None:
        kw["images"] = photographs(kw.get("stim_rows", 64), kw.get("stim_cols", 64))
    return simulate_session(**kw)


@pytest.fixture
def tiny_session():
    return simulate_session(seed=5, **TINY)


@pytest.fixture
def small_session():
    return simulate_session(seed=7, **SMALL)
