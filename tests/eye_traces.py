"""Fixational eye movements sampled at 1000 Hz, with the true microsaccades (issue 18).

Published statistics: drift a random walk with a diffusion constant of 20 arcmin²/s,
microsaccades at 1.5 per second (at least 150 ms apart) of 0.1–0.5°, each a minimum-jerk
movement lasting ``12 + 20·A`` ms (A in degrees: 14 ms at 0.1°, 22 ms at 0.5°, peak
speeds 13–43 deg/s, the microsaccadic main sequence of Martinez-Conde et al. 2004), and
white tracker noise per sample. Blinks are runs of invalid samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Trace:
    t: np.ndarray  # (N,) s
    xy: np.ndarray  # (N, 2) deg, the tracker's reading (NaN in blinks)
    true_xy: np.ndarray  # (N, 2) deg, the eye
    valid: np.ndarray  # (N,) bool
    onset_s: np.ndarray  # (M,) the true microsaccades
    offset_s: np.ndarray
    amplitude_deg: np.ndarray


def fixational_trace(
    seconds: float,
    seed: int,
    rate_hz: float = 1000.0,
    noise_deg: float = 0.005,
    drift_arcmin2_s: float = 20.0,
    microsaccade_hz: float = 1.5,
    amplitude_deg: tuple[float, float] = (0.1, 0.5),
    blink_every_s: float = 0.0,
) -> Trace:
    rng = np.random.default_rng(seed)
    n = round(seconds * rate_hz)
    dt = 1.0 / rate_hz
    t = np.arange(n) * dt
    steps = rng.normal(0.0, np.sqrt(2 * drift_arcmin2_s * dt) / 60, size=(n, 2))
    steps[0] = 0.0
    onsets, offsets, amps = [], [], []
    i = int(rng.exponential(1 / microsaccade_hz) * rate_hz) + 50
    while True:
        amp = rng.uniform(*amplitude_deg)
        dur = round((0.012 + 0.020 * amp) * rate_hz)
        if i + dur >= n - 5:
            break
        ang = rng.uniform(0, 2 * np.pi)
        tau = np.arange(1, dur + 1) / dur
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        path = amp * np.diff(np.r_[0.0, s])[:, None] * np.array([np.cos(ang), np.sin(ang)])
        steps[i : i + dur] += path
        onsets.append(t[i])
        offsets.append(t[i + dur - 1])
        amps.append(amp)
        i += dur + int((0.15 + rng.exponential(1 / microsaccade_hz)) * rate_hz)
    true_xy = np.cumsum(steps, axis=0)
    xy = true_xy + rng.normal(0.0, noise_deg, size=(n, 2))
    valid = np.ones(n, dtype=bool)
    if blink_every_s > 0:
        for start in np.arange(blink_every_s, seconds - 1, blink_every_s):
            a = int(start * rate_hz)
            valid[a : a + int(0.15 * rate_hz)] = False
    xy[~valid] = np.nan
    return Trace(t, xy, true_xy, valid, np.array(onsets), np.array(offsets), np.array(amps))


def matched(trace: Trace, onset_s: np.ndarray, within_s: float) -> np.ndarray:
    """``(M,)`` bool: each true microsaccade has a detected onset within ``within_s``."""
    if onset_s.size == 0:
        return np.zeros(trace.onset_s.size, dtype=bool)
    d = np.abs(trace.onset_s[:, None] - onset_s[None, :])
    return d.min(axis=1) <= within_s
