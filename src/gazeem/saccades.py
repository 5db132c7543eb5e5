"""Saccades and microsaccades in the raw eye samples (Engbert & Kliegl 2003).

A tracker that samples at hundreds of Hz resolves microsaccades (0.1–0.5°, 10–25 ms)
that the bin-averaged trace smears over one or two bins, where they are hard to tell
from drift and tracker noise. The detector:

1. velocity from a moving window, ``v_n = (x_{n+2} + x_{n+1} − x_{n−1} − x_{n−2}) /
   (6 Δt)`` at 500 Hz, over runs of valid, evenly spaced samples (a blink or a gap ends a
   run; samples within a half-window of its ends get no velocity). The window keeps its
   ±4 ms span at other rates (``half = round(0.004 · rate)`` samples a side, at least
   2): at 1000 Hz the five-sample window would span 4 ms and the tracker's noise would
   double the velocity's SD, hiding microsaccades under 0.2°;
2. a threshold per axis, ``η = λ · σ_v``, where ``σ_v = √(median(v²) − median(v)²)`` is
   a median estimator of the velocity's SD that saccades themselves hardly move, computed
   over the whole recording; ``η`` never falls below ``min_velocity_deg_s`` (a trace that
   is constant between samples, as up-sampled or quantised data, has ``σ_v = 0``);
3. a sample is fast when ``(v_x/η_x)² + (v_y/η_y)² > 1``, and a run of at least
   ``min_duration_s`` of fast samples is a saccade (shorter runs are noise).

Engbert & Kliegl used ``λ = 6`` and 6 ms (three samples at 500 Hz); so do the defaults.
The threshold is the recording's: where noise varies within a session (a tracker that
loses the pupil at times) the quiet stretches get a detector as strict as the noisy ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ``saccade_detector: auto`` uses the detector on traces sampled at least this fast: the
#: shortest microsaccades (about 10 ms) then span three samples, the minimum duration
#: Engbert & Kliegl used (6 ms at 500 Hz); slower traces keep the bin-velocity rule
MIN_RATE_HZ = 300.0


@dataclass(frozen=True)
class Saccades:
    """Detected saccades: onset and offset times (s, first and last fast sample), the
    amplitude (deg, offset position − onset position) and peak speed (deg/s) of each,
    and the thresholds ``(η_x, η_y)`` deg/s that found them."""

    onset_s: np.ndarray
    offset_s: np.ndarray
    amplitude_deg: np.ndarray
    peak_speed_deg_s: np.ndarray
    threshold_deg_s: tuple[float, float]
    rate_hz: float

    def __len__(self) -> int:
        return len(self.onset_s)


def sampling_rate(t: np.ndarray) -> float:
    """The trace's sampling rate, Hz: one over the median step between timestamps."""
    d = np.diff(t)
    return float(1.0 / np.median(d)) if d.size else 0.0


def effective_rate(t: np.ndarray, xy: np.ndarray, valid: np.ndarray) -> float:
    """The rate, Hz, at which the trace takes new values: :func:`sampling_rate` times the
    fraction of consecutive valid samples that differ. A 60 Hz tracker logged at 1000 Hz
    (each value held for 16 or 17 samples) has an effective rate of 60 Hz."""
    both = valid[1:] & valid[:-1]
    if not both.any():
        return 0.0
    changed = np.any(xy[1:][both] != xy[:-1][both], axis=1)
    return sampling_rate(t) * float(changed.mean())


def velocity(t: np.ndarray, xy: np.ndarray, valid: np.ndarray, half: int = 2) -> np.ndarray:
    """``(N, 2)`` deg/s: the moving-window velocity of ``xy (N, 2)`` deg,
    ``Σ_{k=1..half} (x_{n+k} − x_{n−k}) / (half (half + 1) Δt)`` (Engbert & Kliegl's for
    ``half = 2``); NaN where any sample of the window is invalid or it spans a gap (a step
    over 1.5 Δt)."""
    n = len(t)
    v = np.full((n, 2), np.nan)
    if n < 2 * half + 1:
        return v
    dt = 1.0 / sampling_rate(t)
    xy = np.where(valid[:, None], xy, np.nan)
    inner = slice(half, n - half)
    acc = np.zeros((n - 2 * half, 2))
    for k in range(1, half + 1):  # the window's sample pairs, not the samples
        acc += xy[half + k : n - half + k] - xy[half - k : n - half - k]
    v[inner] = acc / (half * (half + 1) * dt)
    gap = np.r_[0, np.cumsum(np.diff(t) > 1.5 * dt)]  # gaps before each sample
    v[inner][gap[2 * half :] != gap[: n - 2 * half]] = np.nan
    return v


def _median_sd(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    return float(np.sqrt(max(np.median(v**2) - np.median(v) ** 2, 0.0)))


def detect_saccades(
    t: np.ndarray,
    xy: np.ndarray,
    valid: np.ndarray,
    lam: float = 6.0,
    min_duration_s: float = 0.006,
    min_velocity_deg_s: float = 3.0,
    window_s: float = 0.004,
) -> Saccades:
    """Saccades and microsaccades in a trace ``xy (N, 2)`` deg sampled at ``t (N,)`` s.

    ``valid (N,)`` marks samples to use (False in blinks and lost track). Returns the
    events in time order (:class:`Saccades`).
    """
    t = np.asarray(t, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(xy).all(axis=1)
    rate = sampling_rate(t)
    v = velocity(t, xy, valid, max(2, round(window_s * rate)))
    eta = np.array([max(lam * _median_sd(v[:, a]), min_velocity_deg_s) for a in range(2)])
    fast = np.nan_to_num(((v / eta) ** 2).sum(axis=1), nan=0.0) > 1.0
    edge = np.diff(np.r_[0, fast.astype(np.int8), 0])
    start, stop = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    min_samples = max(int(np.ceil(min_duration_s * rate - 1e-9)), 1) if rate else 1
    keep = stop - start >= min_samples
    start, stop = start[keep], stop[keep]
    speed = np.nan_to_num(np.linalg.norm(v, axis=1), nan=0.0)
    peak = np.array([speed[a:b].max() for a, b in zip(start, stop, strict=True)])
    return Saccades(
        onset_s=t[start],
        offset_s=t[stop - 1],
        amplitude_deg=np.linalg.norm(xy[stop - 1] - xy[start], axis=1),
        peak_speed_deg_s=peak if peak.size else np.zeros(0),
        threshold_deg_s=(float(eta[0]), float(eta[1])),
        rate_hz=rate,
    )


#: a movement begins before its first fast sample and ends after its last: on simulated
#: minimum-jerk microsaccades (0.01° noise, 1000 Hz) by up to 4 and 6 ms, up to a quarter
#: of the amplitude before the onset; :func:`saccade_bins` widens each event by this
PAD_S = 0.006


def saccade_bins(events: Saccades, edges: np.ndarray, pad_s: float = PAD_S) -> np.ndarray:
    """``(T,)`` bool: the bins ``[edges[i], edges[i+1])`` that any saccade, widened by
    ``pad_s`` on each side, overlaps."""
    n = len(edges) - 1
    out = np.zeros(n, dtype=bool)
    on, off = events.onset_s - pad_s, events.offset_s + pad_s
    first = np.clip(np.searchsorted(edges, on, side="right") - 1, 0, n)
    last = np.clip(np.searchsorted(edges, off, side="right") - 1, -1, n - 1)
    delta = np.zeros(n + 1, dtype=np.int64)
    ok = last >= first
    np.add.at(delta, first[ok], 1)
    np.add.at(delta, last[ok] + 1, -1)
    out[:] = np.cumsum(delta[:-1]) > 0
    return out
