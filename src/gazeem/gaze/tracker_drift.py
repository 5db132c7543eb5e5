"""The tracker's error drifting within fixations, measured on consecutive fixations.

The per-fixation latent takes the tracker's error as constant over a fixation, and the
reading's motion within a fixation for the eye's. Where the error itself drifts (a
calibration that creeps, pupil-size artefacts), that drift is taken for eye motion: a bin
lies off its fixation's position by the drift since the fixation's mean, which the
fixation's posterior does not hold (on the fixation task with 0.5 px/√s of drift the 95%
interval covered 77%).

The drift is measured where the error is shared: on consecutive fixations split by a
microsaccade (a movement under :data:`SHARED_MOVE_DEG`, no blink or invalid sample
between them). Their errors differ only by what drifted between them: for a random walk of ``D`` px² per bin
and axis, the difference of two fixations' mean errors (reading minus tracker-predicted
posterior mean), of ``L_a`` and ``L_b`` bins with middles ``Δ`` bins apart, has variance
``D (Δ − (L_a + L_b) / 6)`` per axis (each bin's increment weighted by the share of the
two means it enters: ``∫w² = L_a/3 + gap + L_b/3``) plus the two posteriors' variances.
So ``D = Σ (d² − v) / (2 Σ (Δ − (L_a + L_b) / 6))`` over pairs and two axes, clamped at 0.

Pairs measure drift only where the errors are shared. Where they are not (a tracker whose
error is new at every fixation, or one that depends on where the eye looks), consecutive
errors differ as two independent ones do, ``2 σ²`` per axis, and say nothing about
drift within a fixation; there ``D = 0``, the latent's own assumption. The errors count
as shared when the pooled excess is under :data:`SHARED_FRACTION` of what independent
errors would give (on the fixation task it is 1%; in free viewing with an error drawn
afresh per fixation, about 100%).

A bin ``t`` of a fixation of ``L`` bins lies off the fixation's mean error by
``D (t²/L − t + L/3)`` px² in variance, ``D L / 6`` on average over the fixation, which
is what each of its bins gets added (on the drifting fixation task: 94% coverage).
An earlier estimate from each fixation's two halves, each scored alone, came out 8x low
(0.0005 against 0.0042 px² per bin): with half the spikes each, the halves' posterior
variances were overstated by 15-30%, as much as the drift they were to reveal
(docs/architecture.md, "Drift of the tracker's error within a fixation").
"""

from __future__ import annotations

import numpy as np
import torch

from gazeem.gaze.data import GazeData, invalid_between
from gazeem.models.observation import TrackerModel

#: consecutive fixations share the tracker's error across movements under this (deg)
SHARED_MOVE_DEG = 1.0
#: the errors count as shared below this fraction of two independent errors' difference
SHARED_FRACTION = 0.25
#: fewer shared pairs than this measure nothing: no drift
MIN_PAIRS = 10


def fixation_spans(data: GazeData) -> tuple[np.ndarray, np.ndarray]:
    """``(F,)`` first and last fitted bin of each fixation (bin indices)."""
    bins = data.fit_bins.cpu().numpy()
    fix = data.fixation.cpu().numpy()[bins]
    first = np.full(data.n_fixations, np.iinfo(np.int64).max)
    last = np.full(data.n_fixations, -1)
    np.minimum.at(first, fix, bins)
    np.maximum.at(last, fix, bins)
    return first, last


def shared_pairs(
    data: GazeData, rows: np.ndarray, first: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """``(P, 2)`` positions into ``rows`` of consecutive fixations that share the
    tracker's error: next in time, no invalid sample between, a movement under
    :data:`SHARED_MOVE_DEG`. ``first``, ``last``: :func:`fixation_spans`."""
    order = rows[np.argsort(first[rows])]
    where = np.empty(data.n_fixations, dtype=np.int64)
    where[rows] = np.arange(rows.size)
    a, b = order[:-1], order[1:]
    gap_valid = ~invalid_between(data.eye_px, last[a], first[b])
    rank = np.searchsorted(np.sort(first), first[order])
    adjacent = rank[1:] - rank[:-1] == 1  # no unrefined fixation between them
    move = np.linalg.norm((data.fix_reading[b] - data.fix_reading[a]).numpy(), axis=1)
    keep = gap_valid & adjacent & (move <= SHARED_MOVE_DEG * data.geometry.ppd)
    return np.stack([where[a[keep]], where[b[keep]]], 1)


def tracker_drift_var(
    data: GazeData,
    tracker: TrackerModel,
    rows: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """The tracker's drift within fixations (module docstring).

    ``rows (R,)`` fixations with posterior ``mean (R, 2)`` stimulus px and variance
    ``var (R, 2)`` px². Returns the variance ``(R,)`` px² per axis that each of their bins gets,
    and ``D``, px² per bin and axis.
    """
    rows_np = rows.cpu().numpy()
    first, last = fixation_spans(data)
    n_fit = torch.bincount(data.fixation[data.fit_bins].cpu(), minlength=data.n_fixations)
    n_bins = n_fit[rows.cpu()].to(torch.float64)
    pairs = shared_pairs(data, rows_np, first, last)
    if len(pairs) < MIN_PAIRS:
        return torch.zeros(rows.numel(), dtype=torch.float64), 0.0
    center = torch.as_tensor(data.geometry.center_px, dtype=torch.float64)
    error = data.fix_reading[rows].cpu() - tracker.predict(mean.to(torch.float64) - center)
    a, b = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    excess = float(((error[b] - error[a]) ** 2).sum() - (var[a] + var[b]).sum())
    middle = torch.as_tensor((first + last) / 2)[rows.cpu()]
    span = middle[b] - middle[a] - (n_bins[a] + n_bins[b]) / 6
    independent = len(pairs) * 2 * 2 * float(tracker.sigma) ** 2
    if excess > SHARED_FRACTION * independent:
        return torch.zeros(rows.numel(), dtype=torch.float64), 0.0
    d = max(excess / (2 * float(span.sum())), 0.0)
    return d * n_bins / 6, d
