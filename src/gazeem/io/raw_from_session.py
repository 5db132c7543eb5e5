"""Turn a binned (simulated) session back into raw streams, for writing source files."""

from __future__ import annotations

import itertools

import numpy as np


def raw_arrays(ds, *, eye_samples_per_bin: int = 1, seed: int = 0) -> dict:
    """Spike times, eye samples, frame onsets and calibration intervals of a session dataset.

    Bin ``t`` spans ``[t·bin_s, (t+1)·bin_s)``; spike times fall strictly inside their bin
    (seeded), eye samples at ``eye_samples_per_bin`` evenly spaced points per bin, each the
    bin's reading, unless the session carries the tracker's samples (``eye_trace``, a
    simulation with ``eye_rate_hz``): then those. The true gaze is per bin (``true_t``).
    """
    rng = np.random.default_rng(seed)
    bin_s = float(ds.attrs["bin_s"])
    counts = ds["counts"].values
    n_bins = counts.shape[0]
    k = int(eye_samples_per_bin)
    eye = ds["eye"].values
    eye_t = ((np.arange(n_bins)[:, None] + (np.arange(k)[None, :] + 0.5) / k) * bin_s).reshape(-1)
    eye_xy = np.repeat(eye, k, axis=0)
    true_xy = np.repeat(ds["true_gaze"].values, k, axis=0) if "true_gaze" in ds else None
    true_t = eye_t
    if "eye_trace" in ds:  # the simulated tracker's own samples
        eye_t, eye_xy = ds["eye_trace_time"].values, ds["eye_trace"].values
    spikes = []
    for n in range(counts.shape[1]):
        c = counts[:, n]
        bins = np.repeat(np.arange(n_bins), c)
        spikes.append(np.sort((bins + rng.uniform(0.05, 0.95, size=bins.size)) * bin_s))
    frame = ds["frame"].values
    n_frames = ds.sizes["frame"]
    first = np.full(n_frames, -1)
    shown = frame >= 0
    idx = np.flatnonzero(shown)
    # first bin at which each frame appears
    order = np.argsort(frame[idx], kind="stable")
    uniq, pos = np.unique(frame[idx][order], return_index=True)
    first[uniq] = idx[order][pos]
    if np.any(first < 0):
        raise ValueError("every stimulus frame must be shown at least once to get an onset time.")
    calibration = None
    if "calib_target" in ds:
        tgt = ds["calib_target"].values
        has = np.isfinite(tgt).all(axis=1)
        # each run of bins with the same target is one calibration interval
        key = np.where(has[:, None], tgt, np.inf)
        edge = np.r_[True, np.any(key[1:] != key[:-1], axis=1), True]
        bounds = np.flatnonzero(edge)
        runs = [(a, b) for a, b in itertools.pairwise(bounds) if has[a]]
        if runs:
            a, b = np.asarray(runs).T
            calibration = (a * bin_s, b * bin_s, tgt[a])
    return {
        "eye_t": eye_t,
        "eye_xy": eye_xy,
        "true_xy": true_xy,
        "true_t": true_t,
        "spike_times": spikes,
        "unit_ids": ds["unit"].values,
        "frames": ds["stimulus"].values.astype(np.float32),
        "frame_t": first * bin_s,
        "calibration": calibration,
        "duration": n_bins * bin_s,
    }
