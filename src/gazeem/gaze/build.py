"""The grid and the three models of a session, built from the settings.

:func:`build_tracker` also places the tracker: with calibration fixations it starts
``A`` and ``b`` from them, and it stops when readings fall far outside the gaze grid
(a wrong ppd or stimulus placement).
"""

from __future__ import annotations

import numpy as np
import torch

from gazeem.errors import GazeemError
from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.windows import expected_positions
from gazeem.models.observation import TrackerModel, TrackerStats
from gazeem.models.prior import CellWeightsPrior, CountsPrior, GridPrior, UniformPrior
from gazeem.models.response import PoissonLN, ResponseModel


def build_tracker(
    data: GazeData,
    where: str,
    *,
    grid_margin_px: int,
    sigma_init: float,
    learn_sigma: bool,
    learn_gain: bool,
    offset: str,
) -> tuple[GazeGrid, TrackerModel, str, torch.Tensor]:
    """The gaze grid, the tracker model, the offset mode used and ``z0 (F, 2)``, the gaze
    each reading implies under the starting tracker (stimulus px)."""
    rows, cols = data.geometry.shape
    m = int(grid_margin_px)
    # gaze cells whose receptive-field region lies on the stimulus (± the margin); the
    # gaze itself may be anywhere on the screen, inside the stimulus or not
    ox, oy = data.geometry.rf_offset_px
    grid = GazeGrid(-m - ox, cols - 1 + m - ox, -m - oy, rows - 1 + m - oy)
    offset_mode = offset
    if offset_mode == "auto":
        offset_mode = "calibration" if data.has_calibration else "fields"
    if offset_mode == "calibration" and not data.has_calibration:
        raise GazeemError("offset='calibration' needs calibration fixations (calib_target).")
    tracker = TrackerModel(
        sigma=float(sigma_init),
        # the gain acts about the mean reading, so a translation never distorts it
        anchor=data.fix_reading.mean(0).to(torch.float64),
        learn_sigma=learn_sigma,
        learn_gain=learn_gain,
        learn_offset=offset_mode in ("calibration", "fields"),
    )
    if offset_mode == "calibration":
        _calibrate(tracker, data)
    z0 = expected_positions(data, tracker)
    # a reading just past the grid's edge is normal (the window is clamped inside);
    # one beyond it by more than the tracker's expected error means a wrong ppd or placement
    outside = ~torch.as_tensor(grid.contains(z0.numpy(), tol=0.5 + float(sigma_init)))
    if outside.any():
        i = int(torch.nonzero(outside)[0])
        raise GazeemError(
            f"{where}: field 'ppd': {int(outside.sum())} of {data.n_fixations} "
            "fixations have tracker "
            f"readings more than sigma_init={sigma_init} px outside the gaze grid "
            f"x∈[{grid.x0}, {grid.x1}], y∈[{grid.y0}, {grid.y1}] px "
            f"(e.g. fixation {data.fix_ids[i]} at ({z0[i, 0]:.1f}, {z0[i, 1]:.1f}) px). "
            "Check ppd and the stimulus placement, or widen grid_margin_px."
        )
    return grid, tracker, offset_mode, z0


def build_cell_prior(kind: str, grid: GazeGrid, weights, pseudocount: float) -> GridPrior:
    """``uniform``, fixed ``weights`` over the grid, or learned ``counts``."""
    if kind == "uniform":
        return UniformPrior(grid.n_cells)
    if kind == "weights":
        w = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        if tuple(w.shape) not in ((grid.height, grid.width), (grid.n_cells,)):
            raise GazeemError(
                f"prior_weights has shape {tuple(w.shape)}; the grid is "
                f"({grid.height}, {grid.width}) cells."
            )
        return CellWeightsPrior(w)
    return CountsPrior(grid.n_cells, pseudocount)


def build_response(
    data: GazeData,
    custom: ResponseModel | None,
    *,
    patch_size: int,
    n_lags: int,
    nonlinearity: str,
    l2: float,
    smooth: float,
) -> torch.nn.Module:
    """The user's response model on the data's device, or a :class:`PoissonLN` whose
    biases start at the units' mean counts."""
    if custom is not None:
        return custom.to(device=data.counts.device, dtype=data.counts.dtype)
    response = PoissonLN(
        data.n_units, patch_size, n_lags, nonlinearity=nonlinearity, l2=l2, smooth=smooth
    ).to(device=data.counts.device, dtype=data.counts.dtype)
    response.initialize_bias(data.counts[data.fit_bins].mean(0))
    return response


def _calibrate(tracker: TrackerModel, data: GazeData) -> None:
    """Starting ``A`` and ``b`` from the calibration fixations alone (least squares)."""
    cal = data.is_calibration
    targets = data.fix_calib[cal][:, None, :]
    stats = TrackerStats.from_weighted(
        data.fix_reading[cal], targets, torch.ones(targets.shape[:2], dtype=torch.float64)
    )
    distinct = torch.unique(torch.round(data.fix_calib[cal]), dim=0).shape[0]
    init = TrackerModel(
        sigma=tracker.sigma,
        anchor=tracker.anchor,
        learn_sigma=False,
        learn_gain=tracker.learn_gain and distinct >= 3,
        learn_offset=True,
    )
    init.m_step(stats)
    tracker.gain, tracker.offset = init.gain, init.offset
