"""Per-fixation windows of candidate gaze cells around the tracker reading.

Cells beyond ±kσ of where the tracker says the eye is carry negligible posterior
mass, so only a ``(2h+1) × (2h+1)`` window per fixation is evaluated. The cost of
an E-step is then independent of the size of the whole grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gazeem.coords import spread_rounding
from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.models.observation import TrackerModel


@dataclass(frozen=True)
class Windows:
    """The candidate cells of every fixation.

    Attributes
    ----------
    half
        Half-width ``h``; each window has ``K = (2h+1)²`` cells.
    centers
        ``(F, 2)`` int64 centre cell per fixation, stimulus pixels (x, y).
    cells
        ``(F, K, 2)`` int64 stimulus-pixel position of every cell; ``k = (dy+h)(2h+1) + (dx+h)``.
    cell_index
        ``(F, K)`` int64 flat grid index of every cell.
    support
        ``(F, K)`` bool: cells the E-step may put mass on (a calibration fixation has
        only its target cell; Monte-Carlo EM restricts to the cells drawn last time).
    """

    half: int
    centers: torch.Tensor
    cells: torch.Tensor
    cell_index: torch.Tensor
    support: torch.Tensor

    @property
    def side(self) -> int:
        return 2 * self.half + 1


def square_offsets(steps: torch.Tensor) -> torch.Tensor:
    """``(n², 2)`` (x, y) offsets of a square of ``steps (n,)`` per axis, row by row:
    offset ``k = iy · n + ix`` is ``(steps[ix], steps[iy])``."""
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def window_half_width(sigma: float, k: float, h_min: int, h_max: int, grid: GazeGrid) -> int:
    """``clamp(ceil(k σ), h_min, h_max)``, shrunk so that a window fits in the grid."""
    h = min(max(math.ceil(k * sigma), h_min), h_max)
    return max(0, min(h, (grid.width - 1) // 2, (grid.height - 1) // 2))


def expected_positions(data: GazeData, tracker: TrackerModel) -> torch.Tensor:
    """``(F, 2)`` float64 gaze implied by each fixation's reading, stimulus pixels.

    ``A⁻¹(ẑ - b)``, or the target itself for calibration fixations.
    """
    center = torch.as_tensor(data.geometry.center_px, dtype=torch.float64)
    z = tracker.invert(data.fix_reading) + center
    cal = data.is_calibration
    z[cal] = data.fix_calib[cal] + center
    return z


def pinned_cells(data: GazeData) -> torch.Tensor:
    """``(F_cal, 2)`` int64 stimulus-pixel cell of each calibration fixation, in order.

    A target between two pixels has no cell of its own, and rounding would put every
    fixation on it on the same side: a grid of targets at whole pixels from the centre
    of an even-sized stimulus sits on pixel edges, and the fields and ``b`` can follow
    that half pixel (``docs/architecture.md``, ``offset: calibration``).
    The fixations on one target are spread over the cells around it instead, a fraction
    of them on each side equal to the target's distance from it, so that their mean
    cell is the target (:func:`gazeem.coords.spread_rounding`, over each target's
    fixations in time order).
    """
    center = np.asarray(data.geometry.center_px)
    target = data.fix_calib[data.is_calibration].cpu().numpy() + center
    _, group = np.unique(np.round(target, 6), axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    first = np.searchsorted(group[order], group[order], side="left")
    rank = np.empty_like(group)
    rank[order] = np.arange(group.size) - first
    return torch.from_numpy(spread_rounding(target, rank))


def make_windows(
    data: GazeData,
    tracker: TrackerModel,
    grid: GazeGrid,
    half: int,
    drawn_keys: torch.Tensor | None = None,
) -> Windows:
    """Windows centred on each fixation's expected position, clamped into the grid.

    ``drawn_keys`` are ``fixation * n_cells + cell_index`` of cells drawn by the last
    Monte-Carlo E-step; when given, the support is restricted to them (a fixation with
    no drawn cell inside its new window keeps its whole window).
    """
    dev = data.counts.device
    z = expected_positions(data, tracker)
    c = torch.round(z).to(torch.int64)
    c[:, 0] = c[:, 0].clamp(grid.x0 + half, grid.x1 - half)
    c[:, 1] = c[:, 1].clamp(grid.y0 + half, grid.y1 - half)
    cells = c[:, None, :] + square_offsets(torch.arange(-half, half + 1))[None, :, :]
    cell_index = grid.cell_index(cells)
    n_fix, k = cell_index.shape
    support = torch.ones((n_fix, k), dtype=torch.bool)
    if drawn_keys is not None:
        keys = torch.arange(n_fix)[:, None] * grid.n_cells + cell_index
        drawn = torch.isin(keys, drawn_keys.cpu())
        has = drawn.any(dim=1)
        support[has] = drawn[has]
    cal = data.is_calibration
    if cal.any():
        target = pinned_cells(data)
        rel = target - c[cal] + half
        inside = ((rel >= 0) & (rel <= 2 * half)).all(dim=1)
        if not bool(inside.all()):
            raise ValueError(
                "a calibration target lies outside the gaze grid; widen grid_margin_px."
            )
        kk = rel[:, 1] * (2 * half + 1) + rel[:, 0]
        s = torch.zeros((int(cal.sum()), k), dtype=torch.bool)
        s[torch.arange(s.shape[0]), kk] = True
        support[cal] = s
    return Windows(
        half=half,
        centers=c.to(dev),
        cells=cells.to(dev),
        cell_index=cell_index.to(dev),
        support=support.to(dev),
    )
