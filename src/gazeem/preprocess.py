"""From raw streams to bins: spike counts, the eye trace per bin, saccades and fixations.

All functions are vectorised over samples and bins (no Python loop over time).
"""

from __future__ import annotations

import numpy as np


def frame_bin_edges(
    frame_t: np.ndarray, t_start: float, t_stop: float, bin_s: float | None
) -> np.ndarray:
    """Bin edges, s, covering ``[t_start, t_stop)``.

    ``bin_s=None`` gives one bin per stimulus frame (edges at the frame onsets); otherwise
    bins of ``bin_s`` start at the first frame onset at or after ``t_start``.
    """
    if bin_s is None:
        period = float(np.median(np.diff(frame_t))) if len(frame_t) > 1 else 1.0
        edges = np.r_[frame_t, frame_t[-1] + period]
    else:
        i0 = np.searchsorted(frame_t, t_start - 1e-9)
        t0 = frame_t[i0] if i0 < len(frame_t) else frame_t[0]
        n = int(np.floor((t_stop - t0) / bin_s + 1e-9))
        edges = t0 + np.arange(n + 1) * bin_s
    keep = (edges >= t_start - 1e-9) & (edges <= t_stop + 1e-9)
    return edges[keep]


def bin_events(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``times`` in each ``[edges[i], edges[i+1])``; ``(len(edges) - 1,)`` int."""
    idx = np.searchsorted(edges, times, side="right") - 1
    ok = (idx >= 0) & (idx < len(edges) - 1)
    return np.bincount(idx[ok], minlength=len(edges) - 1)


def bin_spikes(spike_times: list[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """``(T, N)`` int32 spike counts per bin and unit."""
    return np.stack([bin_events(st, edges) for st in spike_times], axis=1).astype(np.int32)


def bin_eye(
    eye_t: np.ndarray,
    eye_xy: np.ndarray,
    valid: np.ndarray,
    edges: np.ndarray,
    min_valid_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Average the valid eye samples within each bin.

    A bin is valid when it has samples and at least ``min_valid_fraction`` of them are
    valid (blinks and lost track are invalid). Returns ``eye (T, 2)`` (NaN where
    invalid) and ``eye_valid (T,)``.
    """
    n_bins = len(edges) - 1
    idx = np.searchsorted(edges, eye_t, side="right") - 1
    inside = (idx >= 0) & (idx < n_bins)
    total = np.bincount(idx[inside], minlength=n_bins)
    good = inside & valid
    n_good = np.bincount(idx[good], minlength=n_bins)
    sums = np.stack(
        [np.bincount(idx[good], weights=eye_xy[good, a], minlength=n_bins) for a in range(2)],
        axis=1,
    )
    ok = (n_good > 0) & (n_good >= min_valid_fraction * np.maximum(total, 1))
    eye = np.full((n_bins, 2), np.nan)
    eye[ok] = sums[ok] / n_good[ok, None]
    return eye, ok


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) indices of the runs of True in ``mask``."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


#: the displacement rule's window, bins: at 60 Hz the longest a small saccade is spread over
SLOW_WINDOW_BINS = 3
#: its threshold, in median-estimated SDs of the window's displacement (as Engbert & Kliegl)
SLOW_LAMBDA = 6.0
#: and never below this, deg (a trace constant between samples has a displacement SD of 0)
MIN_SLOW_AMPLITUDE_DEG = 0.05


def _median_sd(d: np.ndarray) -> float:
    """A median estimator of the SD of ``d``, which a minority of outliers hardly moves."""
    return float(np.sqrt(max(np.median(d**2) - np.median(d) ** 2, 0.0)))


def slow_movements(
    eye: np.ndarray, valid: np.ndarray, fast: np.ndarray, k: int, lam: float
) -> np.ndarray:
    """``(T-1,)`` bool: steps of movements that the velocity rule missed.

    A window of ``k`` steps inside a stretch of still, valid bins moves the trace by
    ``D``; per axis, ``η = max(lam · σ, MIN_SLOW_AMPLITUDE_DEG)`` with ``σ`` the median
    estimate of the SD of ``D`` over every such window of the recording (drift and
    jitter; the few movements hardly move it), and a window with
    ``(D_x/η_x)² + (D_y/η_y)² > 1`` holds a movement. In each run of such windows the one
    that moved most is taken, and its steps are marked, less the steps at either end
    that move along its direction by under half its mean step (the still eye on each
    side). A saccade within one step that the velocity rule caught gives no window
    (windows that cross a marked step are skipped), so nothing changes there.
    """
    t = len(eye)
    out = np.zeros(max(t - 1, 0), dtype=bool)
    if t <= k:
        return out
    still = ~fast & valid[:-1] & valid[1:]
    bad = np.r_[0, np.cumsum(~still)]
    ok = (bad[k:] - bad[:-k]) == 0  # (t-k,) windows s..s+k of still steps
    if ok.sum() < 10:
        return out
    d = np.nan_to_num(eye[k:] - eye[:-k])
    eta = np.array([max(lam * _median_sd(d[ok, a]), MIN_SLOW_AMPLITUDE_DEG) for a in range(2)])
    score = ((d / eta) ** 2).sum(1)
    moving = ok & (score > 1)
    starts, stops = _runs(moving)
    step = np.nan_to_num(np.diff(eye, axis=0))
    for a, b in zip(starts, stops, strict=True):
        s = a + int(np.argmax(score[a:b]))
        move = d[s]
        along = step[s : s + k] @ (move / np.linalg.norm(move))
        keep = np.flatnonzero(along >= np.linalg.norm(move) / (2 * k))
        if keep.size:
            out[s + keep[0] : s + keep[-1] + 1] = True
    return out


def detect_fixations(
    eye: np.ndarray,
    valid: np.ndarray,
    bin_s: float,
    velocity_deg_s: float = 5.0,
    min_saccade_bins: int = 1,
    min_fixation_bins: int = 3,
    saccade: np.ndarray | None = None,
    slow_window_bins: int = SLOW_WINDOW_BINS,
    slow_lambda: float = SLOW_LAMBDA,
) -> np.ndarray:
    """Fixation id per bin (0, 1, ...), -1 in saccades and invalid stretches.

    ``saccade (T,)`` bool, when given, marks the bins that saccades detected in the raw
    samples overlap (:func:`gazeem.saccades.saccade_bins`); they are cut out like invalid
    bins and the bin-velocity rule below is not used.

    The velocity of each step between consecutive bins of the bin-averaged trace is
    compared with ``velocity_deg_s``; a run of fast steps is a saccade, and a saccade
    of fewer than ``min_saccade_bins`` steps is ignored (a tracker glitch). Saccades
    and invalid bins cut the trace into segments; a segment of at least
    ``min_fixation_bins`` bins is a fixation. The bins in the middle of a saccade
    form segments too short to count, so they get -1.

    At 60 Hz a saccade spans one or two bins, and tracker error can hide one of its
    steps, so the rule works on steps rather than asking a bin to be fast on both sides.
    A small saccade spread over a few bins is slower than the threshold at every step;
    :func:`slow_movements` finds those (``slow_window_bins`` 0 or 1: not used).
    """
    n = len(eye)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    if saccade is not None:
        valid = valid & ~np.asarray(saccade, dtype=bool)
        fast = np.zeros(n - 1, dtype=bool)
    else:
        speed = np.linalg.norm(np.diff(eye, axis=0), axis=1) / bin_s  # NaN next to invalid
        fast = np.nan_to_num(speed, nan=0.0) > velocity_deg_s
        s, e = _runs(fast)
        for a, b in zip(s, e, strict=True):
            if b - a < min_saccade_bins:
                fast[a:b] = False
    if saccade is None and slow_window_bins > 1:
        fast |= slow_movements(eye, valid, fast, slow_window_bins, slow_lambda)
    cut = np.r_[True, fast | ~valid[:-1] | ~valid[1:]]
    segment = np.cumsum(cut) - 1
    segment[~valid] = -1
    length = np.bincount(segment[valid], minlength=segment.max() + 1)
    keep = length >= min_fixation_bins
    new_id = np.full(len(length), -1, dtype=np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    fixation = np.full(n, -1, dtype=np.int32)
    fixation[valid] = new_id[segment[valid]]
    return fixation


def frame_index(frame_t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at the start of each bin (-1 before the first frame)."""
    return (np.searchsorted(frame_t, edges[:-1] + 1e-9, side="right") - 1).astype(np.int64)


def calibration_targets(calibration, edges: np.ndarray) -> np.ndarray:
    """``(T, 2)`` target (degrees) for bins whose centre lies in a calibration interval; NaN elsewhere."""
    centres = (edges[:-1] + edges[1:]) / 2
    out = np.full((len(centres), 2), np.nan)
    if calibration is None:
        return out
    start, stop, target = calibration
    order = np.argsort(start)
    start, stop, target = start[order], stop[order], target[order]
    i = np.searchsorted(start, centres, side="right") - 1
    ok = (i >= 0) & (centres < stop[np.clip(i, 0, None)])
    out[ok] = target[i[ok]]
    return out
