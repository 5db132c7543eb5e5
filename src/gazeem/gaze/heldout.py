"""Does the correction beat the raw trace? Held-out spike likelihood.

A fit can converge to a correction that the data do not support (EM stuck at the raw
trace's fixed point with a false certainty, or a wrong optimum). The spikes that chose
the corrected gaze, or fitted the fields that chose it, cannot judge it. So the
fixations are split into two folds (odd and even), and for each fold in turn:

1. fields are fitted anew (the same penalties) on the *other* fold, once at the fit's
   corrected gaze and once at the raw reading;
2. the gaze of each bin of this fold is inferred again with the first of those fields,
   from the spikes of every other bin of its fixation only (alternate bins, both ways
   round; the per-bin chain carries the gaze across the bins left out), with the fit's
   tracker, drift and window;
3. each bin's spikes are scored under the corrected fields at that gaze, and under the
   raw fields at the raw reading.

No bin's spikes placed its gaze or fitted the fields that score it. Two leakier
designs were tried first and failed on counts shuffled in time (no gaze information):
gaze inferred from half the units and scored on the other half "supported" a correction
at z = 5.1 (units share noise within a bin), and alternate bins with the fit's own
fields (which had seen the scored spikes) at z = 2.8.

The sums are the held-out log-likelihoods under the corrected gaze and under the raw
trace, nats. The correction is *supported* when the mean per-fixation difference exceeds
twice its standard error (fixations are the independent pieces: each has its own tracker
error). Positions are rounded to the grid, one point per bin, so both are scored alike.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch

from gazeem.em.mstep import maximize_weighted
from gazeem.gaze.batches import Batches
from gazeem.gaze.data import GazeData
from gazeem.models.response import PoissonLN


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out log-likelihoods (nats) of the responses and the spikes they scored."""

    loglik_raw: float
    loglik_corrected: float
    n_spikes: int
    #: mean per-fixation gain (corrected − raw) over its standard error
    z: float

    @property
    def bits_per_spike(self) -> float:
        """``(corrected − raw) / (spikes · ln 2)``: > 0 when the correction is supported."""
        return (self.loglik_corrected - self.loglik_raw) / max(self.n_spikes, 1) / math.log(2)

    @property
    def supported(self) -> bool:
        return self.z > 2.0


def _fit_fields(data: GazeData, template: PoissonLN, bins, xy, budget, max_iter: int):
    """Fresh fields (``template``'s penalties) fitted on ``bins`` at gaze ``xy (M, 2)``."""
    resp = PoissonLN(
        data.n_units,
        template.patch_size,
        template.n_lags,
        template.nonlinearity,
        template.l2,
        template.smooth,
    ).to(template.rf)
    resp.initialize_bias(data.counts[bins].to(torch.float64).mean(0))
    ones = torch.ones(bins.numel(), dtype=torch.float64)
    batches = Batches(data, resp, budget).sparse_pair_batches(bins, xy, ones, cache=True)
    maximize_weighted(resp, batches, max_iter=max_iter)
    return resp


def _loglik(data: GazeData, resp: PoissonLN, bins, xy, budget) -> torch.Tensor:
    """``(M,)`` float64 log-likelihood of each bin's spikes at gaze ``xy (M, 2)``."""
    ones = torch.ones(bins.numel(), dtype=torch.float64)
    out = []
    with torch.no_grad():
        for x, y, z, _ in Batches(data, resp, budget).sparse_pair_batches(bins, xy, ones, False)():
            out.append(resp.log_likelihood(x, y, z).to(torch.float64).cpu())
    return torch.cat(out)


def _reinfer(problem, resp: PoissonLN, seen_bins: torch.Tensor) -> np.ndarray:
    """``(T, 2)`` per-bin posterior mean (px) from the spikes of ``seen_bins`` only."""
    data = problem.data
    infer = type(problem)(
        data,
        problem.grid,
        copy.deepcopy(problem.tracker),
        problem.cell_prior,
        resp,
        None,
        problem.settings,
    )
    for name in ("sigma_drift", "sigma_sacc"):
        if hasattr(problem, name):
            setattr(infer, name, getattr(problem, name))
    weight = torch.zeros(data.fixation.numel(), dtype=torch.float64)
    weight[seen_bins.cpu()] = 1.0
    getattr(infer, "base", infer).response_weight = weight
    with torch.no_grad():
        return infer.e_step().posterior.per_bin(data, infer.tracker)["mean"]


def heldout_comparison(
    problem, raw_cells: torch.Tensor, corrected: np.ndarray, max_iter: int = 100
) -> HeldOut | None:
    """Corrected gaze against the raw trace on held-out fixations and bins.

    Parameters
    ----------
    problem
        The fitted :class:`~gazeem.gaze.fixation.FixationProblem` or
        :class:`~gazeem.gaze.drift.DriftProblem` (its tracker, drift SDs and window as EM
        left them; nothing is changed).
    raw_cells
        ``(F, 2)`` int64 stimulus px: each fixation's raw reading, as the raw-trace fit saw it.
    corrected
        ``(T, 2)`` stimulus px: the fit's corrected gaze per bin (posterior means).

    Returns ``None`` for a response model other than :class:`PoissonLN`, or fewer than
    four fixations.
    """
    data: GazeData = problem.data
    if not isinstance(problem.response, PoissonLN) or data.n_fixations < 4:
        return None
    budget = problem.settings.memory
    bins = data.fit_bins
    fix = data.fixation[bins]
    n_per = torch.bincount(fix, minlength=data.n_fixations)
    within = torch.arange(bins.numel(), device=bins.device) - (torch.cumsum(n_per, 0) - n_per)[fix]
    parity = (within % 2).to(bins.device)
    test_fold = fix % 2
    raw_xy = raw_cells.to(bins.device, torch.int64)[fix]
    corr_xy = torch.as_tensor(np.rint(corrected[bins.cpu().numpy()]), dtype=torch.int64)
    corr_xy = corr_xy.to(bins.device)
    ll_raw = torch.zeros(bins.numel(), dtype=torch.float64)
    ll_corr = torch.zeros(bins.numel(), dtype=torch.float64)
    for k in (0, 1):
        test = test_fold == k
        train = ~test
        fields = _fit_fields(data, problem.response, bins[train], corr_xy[train], budget, max_iter)
        raw_fields = _fit_fields(
            data, problem.response, bins[train], raw_xy[train], budget, max_iter
        )
        ll_raw[test.cpu()] = _loglik(data, raw_fields, bins[test], raw_xy[test], budget)
        for seen in (0, 1):
            mean = _reinfer(problem, fields, bins[test & (parity == seen)])
            scored = test & (parity != seen)
            xy = torch.as_tensor(np.rint(mean[bins[scored].cpu().numpy()]), dtype=torch.int64)
            ll_corr[scored.cpu()] = _loglik(data, fields, bins[scored], xy.to(bins.device), budget)
    diff = torch.zeros(data.n_fixations, dtype=torch.float64)
    diff.index_add_(0, fix.cpu(), ll_corr - ll_raw)
    se = float(diff.std()) / math.sqrt(data.n_fixations)
    z = float(diff.mean()) / se if se > 0 else 0.0
    n_spikes = int(data.counts[bins].sum())
    return HeldOut(float(ll_raw.sum()), float(ll_corr.sum()), n_spikes, z)
