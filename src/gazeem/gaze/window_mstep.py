"""The response M-step over whole windows: no patch is cut per (bin, cell) pair (issue 19).

For :class:`~gazeem.models.response.PoissonLN` with ``exp``, the expected
log-likelihood under the posterior q splits in two (``w_tc`` is q's weight of cell
``c`` for bin ``t``, ``g_tcn = b_n + ⟨rf_n, x_tc⟩`` the drive):

``Σ_t Σ_c w_tc Σ_n [y_tn g_tcn − exp(g_tcn)]
= Σ_n [b_n Σ_t y_tn W_t + ⟨rf_n, S_n⟩] − Σ_t Σ_c w_tc Σ_n exp(g_tcn)``

with ``W_t = Σ_c w_tc`` and ``S = Σ_t y_t ⊗ (Σ_c w_tc x_tc)``, the posterior-weighted
spike-triggered sum. The linear part is fixed during an M-step and computed once. The
rate part is, per evaluation, one convolution of each bin's stimulus crop with the
fields and one correlation of the crop with ``w · exp(g)`` for the gradient
(:meth:`PoissonLN.accumulate_window_rate`), the same batched form as the E-step.

Each fixation's window is cut to the bounding box of the cells that hold all but
``prune_mass`` of its posterior (the caller's ``keep``). A bin's crop then covers that
box plus a patch around it: for a posterior over ``K`` cells in a ``B × B`` box, a
crop of ``(B + P − 1)²`` pixels replaces ``K`` patches of ``P²``. Rows of a chunk
share a box side, so fixations are taken in order of box side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gazeem.gaze.batches import Batches, concat_ranges
from gazeem.gaze.patches import gather_crops, lagged_frame_index
from gazeem.models.response import add_grad


@dataclass(frozen=True)
class WindowChunk:
    """Rows (bins or held-frame runs) that share a box side ``B``.

    ``crops (T, L, B + P − 1, B + P − 1)`` and ``wmap (T, B, B)``: each cell's posterior
    weight times the row's weight (its run length), 0 off the support.
    """

    crops: torch.Tensor
    wmap: torch.Tensor


class WindowObjective:
    """The M-step's loss ``−scale · Σ w (y·g − exp g)`` and its gradient, by windows.

    It is what :meth:`PoissonLN.accumulate_weighted_loss` sums over pair batches (both
    leave out ``Σ log y!``), so :func:`gazeem.em.mstep.maximize_weighted` takes either.

    Parameters
    ----------
    batches
        The session's crop and pair machinery (memory budget, held-frame runs).
    cells, weights, keep
        ``(F, K, 2)`` cell positions (stimulus px), ``(F, K)`` posterior weights and
        ``(F, K)`` the kept support, as for :meth:`Batches.pair_batches`.
    pooled
        Score held-frame runs once (:class:`gazeem.gaze.batches.Runs`) where the session
        has them.
    cache
        Keep the crops between evaluations when they fit ``cache_mb``.
    """

    def __init__(
        self,
        batches: Batches,
        cells: torch.Tensor,
        weights: torch.Tensor,
        keep: torch.Tensor,
        pooled: bool = True,
        cache: bool = True,
    ) -> None:
        self.batches = batches
        d = batches.data
        self.runs = batches.runs if pooled else None
        dev, dtype = d.counts.device, d.counts.dtype
        cells, keep = cells.to(dev), keep.to(dev)
        w = torch.where(keep, weights.to(dev, torch.float64), 0.0)
        big = torch.iinfo(torch.int64).max
        x, y = cells[..., 0], cells[..., 1]
        x0 = torch.where(keep, x, big).min(1).values
        y0 = torch.where(keep, y, big).min(1).values
        side = (
            torch.maximum(
                torch.where(keep, x, -big).max(1).values - x0,
                torch.where(keep, y, -big).max(1).values - y0,
            )
            + 1
        )
        self.x0, self.y0, self.side = x0, y0, side
        # every fixation's weight map, (F, B_max, B_max), cells at (y − y0, x − x0)
        b_max = int(side.max())
        f_idx, k_idx = keep.nonzero(as_tuple=True)
        maps = torch.zeros((keep.shape[0], b_max, b_max), dtype=torch.float64, device=dev)
        maps[f_idx, y[f_idx, k_idx] - y0[f_idx], x[f_idx, k_idx] - x0[f_idx]] = w[f_idx, k_idx]
        self.maps = maps.to(dtype)
        if self.runs is None:
            self.rows, self.row_fix = d.fit_bins, d.fixation[d.fit_bins]
            self.row_weight = torch.ones(self.rows.numel(), dtype=dtype, device=dev)
            self.counts = d.counts[self.rows]
        else:
            self.rows, self.row_fix = self.runs.first, self.runs.fixation
            self.row_weight = self.runs.size
            self.counts = self.runs.mean_counts
        n_fix = keep.shape[0]
        n_rows = torch.bincount(self.row_fix, minlength=n_fix)
        start = torch.cumsum(n_rows, 0) - n_rows
        order = torch.argsort(side, stable=True)
        # rows in order of their fixation's box side (rows of a fixation stay together)
        self.order = concat_ranges(start[order], n_rows[order])
        self._cached: list[WindowChunk] | None = None
        if cache and batches.budget.fits_cache(self._crop_bytes()):
            self._cached = list(self._make())
        self.sta, self.yw, self.total_weight = self._linear_part()

    # -- chunks ------------------------------------------------------------------------------
    def _row_bytes(self, b: int) -> int:
        d, resp = self.batches.data, self.batches.response
        r = b + resp.patch_size - 1
        item = d.counts.element_size()
        frames = resp.n_lags * d.frames.bytes_per_frame_read()
        return item * (resp.n_lags * r * r + 3 * d.n_units * b * b + b * b) + frames

    def _crop_bytes(self) -> int:
        d, resp = self.batches.data, self.batches.response
        r = self.side[self.row_fix] + resp.patch_size - 1
        return int((resp.n_lags * r * r + self.side[self.row_fix] ** 2).sum()) * (
            d.counts.element_size()
        )

    def _make(self) -> Iterator[WindowChunk]:
        d, resp = self.batches.data, self.batches.response
        p, lags = resp.patch_size, resp.n_lags
        ox, oy = self.batches.offset
        side_of_row = self.side[self.row_fix[self.order]].cpu()
        n, s = self.order.numel(), 0
        while s < n:
            # size the chunk by its largest box side (the sides ascend along the rows)
            first = self.batches.chunk_bins(self._row_bytes(int(side_of_row[s])))
            b = int(side_of_row[min(n, s + max(1, first)) - 1])
            e = min(n, s + max(1, self.batches.chunk_bins(self._row_bytes(b))))
            b = int(side_of_row[e - 1])
            rows = self.order[s:e]
            f = self.row_fix[rows]
            corner = self.batches.moved(torch.stack([self.x0[f], self.y0[f]], 1), self.rows[rows])
            crops = gather_crops(
                d.frames,
                lagged_frame_index(d.frame, self.rows[rows], lags),
                corner[:, 1] + oy - p // 2,
                corner[:, 0] + ox - p // 2,
                b + p - 1,
            )
            wmap = self.maps[f, :b, :b] * self.row_weight[rows, None, None]
            yield WindowChunk(crops, wmap)
            s = e

    def chunks(self) -> Iterator[WindowChunk]:
        return iter(self._cached) if self._cached is not None else self._make()

    # -- the objective -------------------------------------------------------------------------
    def _linear_part(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``S (N, L, P, P)``, ``Σ_t y_t W_t (N,)`` and the total weight, in one pass."""
        resp = self.batches.response
        d = self.batches.data
        sta = torch.zeros(resp.rf.shape, dtype=torch.float64, device=d.counts.device)
        yw = torch.zeros(d.n_units, dtype=torch.float64, device=d.counts.device)
        total, s = 0.0, 0
        for ch in self.chunks():
            t, lags, r, _ = ch.crops.shape
            rows = self.order[s : s + t]
            s += t
            y = self.counts[rows].to(torch.float64)
            # Σ_c w_tc x_tc for every row: the crop correlated with its own weight map
            m = F.conv2d(
                ch.crops.reshape(1, t * lags, r, r),
                ch.wmap.repeat_interleave(lags, 0)[:, None],
                groups=t * lags,
            ).reshape(t, -1)
            sta += (y.T @ m.to(torch.float64)).reshape(sta.shape)
            wsum = ch.wmap.sum((1, 2)).to(torch.float64)
            yw += y.T @ wsum
            total += float(wsum.sum())
        return sta.to(resp.rf.dtype), yw.to(resp.rf.dtype), total

    def accumulate(self, module: torch.nn.Module, scale: float) -> float:
        """Add the loss's gradient to ``module``'s ``.grad``; return the loss."""
        loss = 0.0
        for ch in self.chunks():
            loss += module.accumulate_window_rate(ch.crops, ch.wmap, scale)
        with torch.no_grad():
            linear = float((module.rf * self.sta).sum(dtype=torch.float64)) + float(
                (module.bias * self.yw).sum(dtype=torch.float64)
            )
            add_grad(module.rf, -scale * self.sta)
            add_grad(module.bias, -scale * self.yw)
        return loss - scale * linear

    def value(self, module: torch.nn.Module) -> float:
        """``Σ w (y·g − exp g)`` at the current parameters (nats, without ``Σ log y!``)."""
        saved = [p.grad for p in module.parameters()]
        for p in module.parameters():
            p.grad = None
        try:
            return -self.accumulate(module, 1.0)
        finally:
            for p, g in zip(module.parameters(), saved, strict=True):
                p.grad = g
