"""Where the receptive fields are, for users who do not know: ``gazeem locate-fields``.

A raw-trace fit over a wide region around the tracker's reading. For every bin inside a
fixation, the stimulus is cut in a square of ``±radius_deg`` around the reading and
pooled into blocks (at most ``max_cells`` a side); the covariance of each unit's counts
with every block (its spike-triggered average) gives a map per unit. Its square,
smoothed over 3×3 blocks, is the unit's energy map:

- the unit's field centre is the energy centroid around the map's peak;
- the unit counts as *located* when the peak stands ``min_snr`` robust SDs (median
  absolute deviation) above the map's median;
- the population's centre is the median of the located units' centres, and the
  suggested patch covers each located field around it.

Everything is relative to the **tracker's reading**, so it includes the tracker's
calibration offset: that is what the session table's ``rf_x_deg``, ``rf_y_deg`` should
hold when nothing better (calibration fixations, a mapping session) is known.
Degrees: x right, y up.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
import yaml

from gazeem import __version__
from gazeem.errors import GazeemError
from gazeem.gaze.data import GazeData
from gazeem.gaze.patches import gather_crops, lagged_frame_index

log = logging.getLogger("gazeem.locate")


@dataclass(frozen=True)
class LocateSettings:
    """Settings of :func:`locate_fields` (the config's ``locate:`` section).

    Attributes
    ----------
    radius_deg
        Half-width of the searched square around the tracker's reading, degrees.
    max_cells
        Blocks per side of the pooled region at most; the block is
        ``ceil((2 R + 1) / max_cells)`` pixels for a radius of ``R`` pixels.
    min_snr
        A unit is located when its energy peak is this many robust SDs above the median.
    """

    radius_deg: float = 4.0
    max_cells: int = 61
    min_snr: float = 8.0


def _smoothed(energy: np.ndarray) -> np.ndarray:
    """``(N, G, G)`` energy maps smoothed over 3×3 blocks."""
    e = torch.as_tensor(energy)[:, None]
    return F.avg_pool2d(e, 3, stride=1, padding=1, count_include_pad=False)[:, 0].numpy()


def _peak_centroid(e: np.ndarray, floor: float) -> tuple[float, float, float]:
    """``(x, y, radius)`` in blocks: the centroid of ``e − floor`` within 2 blocks of the
    peak, and the RMS radius of that energy."""
    g = e.shape[0]
    iy, ix = np.unravel_index(np.argmax(e), e.shape)
    y0, y1, x0, x1 = max(iy - 2, 0), min(iy + 3, g), max(ix - 2, 0), min(ix + 3, g)
    w = np.clip(e[y0:y1, x0:x1] - floor, 0, None)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    total = w.sum()
    cx, cy = (w * xx).sum() / total, (w * yy).sum() / total
    r = math.sqrt((w * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum() / total)
    return float(cx), float(cy), r


def locate_fields(session: xr.Dataset, settings: LocateSettings | None = None) -> xr.Dataset:
    """Each unit's and the population's receptive-field centre relative to the gaze.

    Parameters
    ----------
    session
        A session dataset (``docs/data-format.md``).
    settings
        :class:`LocateSettings`.

    Returns
    -------
    A dataset with ``center_deg (unit, axis)``, ``snr (unit)``, ``located (unit)``,
    ``energy (unit, y_deg, x_deg)`` (each unit's map divided by its peak) and
    ``population_energy (y_deg, x_deg)``; attributes ``population_x_deg``,
    ``population_y_deg`` (NaN when no unit is located), ``suggested_patch_px``,
    ``n_located`` and the settings.
    """
    s = settings or LocateSettings()
    where = str(session.encoding.get("source") or session.attrs.get("session", "session"))
    if s.radius_deg <= 0 or s.max_cells < 5 or s.min_snr <= 0:
        raise GazeemError(f"locate settings: need positive values, got {asdict(s)}.")
    data = GazeData.from_dataset(session, torch.device("cpu"), torch.float32)
    ppd = data.geometry.ppd
    r_px = max(2, round(s.radius_deg * ppd))
    block = math.ceil((2 * r_px + 1) / s.max_cells)
    g = math.ceil((2 * r_px + 1) / block)
    side = g * block
    bins = data.fit_bins
    eye = torch.as_tensor(data.eye_px[bins.numpy()])
    ok = torch.isfinite(eye).all(1)
    bins, eye = bins[ok], torch.round(eye[ok]).to(torch.int64)
    if bins.numel() < 10 * data.n_units:
        raise GazeemError(
            f"{where}: field 'eye': only {bins.numel()} valid bins inside fixations; "
            "too few to locate the fields."
        )
    d = g * g
    sxx = torch.zeros(d, dtype=torch.float64)
    xty = torch.zeros(d, data.n_units, dtype=torch.float64)
    sx = torch.zeros(d, dtype=torch.float64)
    sy = torch.zeros(data.n_units, dtype=torch.float64)
    chunk = max(1, (64 << 20) // (4 * side * side))
    for a in range(0, bins.numel(), chunk):
        b, z = bins[a : a + chunk], eye[a : a + chunk]
        frames = lagged_frame_index(data.frame, b, 1)
        crops = gather_crops(data.frames, frames, z[:, 1] - side // 2, z[:, 0] - side // 2, side)
        x = F.avg_pool2d(crops, block).reshape(b.numel(), d).to(torch.float64)
        y = data.counts[b].to(torch.float64)
        sxx += (x * x).sum(0)
        xty += x.T @ y
        sx += x.sum(0)
        sy += y.sum(0)
    n = float(bins.numel())
    var = sxx - sx * sx / n
    cross = xty - torch.outer(sx, sy) / n
    if not float(var.max()) > 0:
        raise GazeemError(f"{where}: field 'stimulus': the stimulus does not vary.")
    # the spike-triggered average. Whitening by the stimulus covariance (a ridge
    # regression) was tried first: with the gaze far from a small stimulus most blocks are
    # rarely seen, the regression has more unknowns than bins, and its noise peaks won.
    w = cross / n
    raw_energy = w.T.reshape(data.n_units, g, g).numpy() ** 2
    energy = _smoothed(raw_energy)
    # blocks the stimulus reached (the gaze may sit far from it): noise is judged there only
    seen = (var > 0.01 * float(var.max())).reshape(g, g).numpy()
    energy[:, ~seen] = 0.0
    raw_energy[:, ~seen] = 0.0

    # block j's centre, pixels from the rounded reading (x right, y down)
    def to_px(j: float) -> float:
        return j * block + (block - 1) / 2 - side // 2

    centers = np.full((data.n_units, 2), np.nan)
    snr = np.zeros(data.n_units)
    radius = np.zeros(data.n_units)
    for u in range(data.n_units):
        e = energy[u]
        med = float(np.median(e[seen]))
        mad = 1.4826 * float(np.median(np.abs(e[seen] - med))) + 1e-300
        snr[u] = (float(e.max()) - med) / mad
        cx, cy, _ = _peak_centroid(e, med)
        centers[u] = (to_px(cx), to_px(cy))
        # the field's size from the unsmoothed map, less the pooling's own spread
        _, _, r = _peak_centroid(raw_energy[u], float(np.median(raw_energy[u][seen])))
        radius[u] = math.sqrt(max(r * r - 1 / 6, 0.0)) * block
    located = snr >= s.min_snr
    pop = np.median(centers[located], axis=0) if located.any() else np.full(2, np.nan)
    if located.any():
        reach = np.abs(centers[located] - pop).max(1) + 2 * radius[located] + block / 2
        patch = int(2 * math.ceil(float(reach.max())))
        patch = max(8, patch + patch % 2)
    else:
        patch = 0
        log.warning(
            "%s: no unit's field stands %.1f robust SDs above its map within %.1f deg of the "
            "gaze; widen radius_deg or check the stimulus timing (lag_bins).",
            where,
            s.min_snr,
            s.radius_deg,
        )
    peak = energy.max(axis=(1, 2), keepdims=True)
    norm = energy / np.where(peak > 0, peak, 1.0)
    pop_map = norm[located].mean(0) if located.any() else np.zeros((g, g))
    coord = np.array([to_px(j) for j in range(g)]) / ppd
    center_deg = np.c_[centers[:, 0] / ppd, -centers[:, 1] / ppd]
    out = xr.Dataset(
        {
            "center_deg": (
                ("unit", "axis"),
                center_deg,
                {"units": "degree", "long_name": "field centre relative to the tracker's reading"},
            ),
            "snr": (("unit",), snr, {"units": "1", "long_name": "energy peak over robust SD"}),
            "located": (
                ("unit",),
                located,
                {"long_name": f"snr >= {s.min_snr}", "threshold": float(s.min_snr)},
            ),
            "radius_deg": (
                ("unit",),
                radius / ppd,
                {"units": "degree", "long_name": "RMS radius of the field's energy"},
            ),
            "energy": (
                ("unit", "y_deg", "x_deg"),
                norm[:, ::-1, :].astype(np.float32),
                {"units": "1", "long_name": "smoothed squared weights / peak"},
            ),
            "population_energy": (
                ("y_deg", "x_deg"),
                pop_map[::-1, :].astype(np.float32),
                {"units": "1", "long_name": "mean energy of the located units"},
            ),
        },
        coords={
            "unit": session["unit"].values,
            "axis": ["x", "y"],
            "x_deg": ("x_deg", coord, {"units": "degree", "long_name": "x from the gaze (right)"}),
            "y_deg": (
                "y_deg",
                -coord[::-1],
                {"units": "degree", "long_name": "y from the gaze (up)"},
            ),
        },
    )
    out.attrs.update(
        {
            "title": f"receptive-field location, session {session.attrs.get('session', '')}",
            "Conventions": "CF-1.8",
            "session": str(session.attrs.get("session", "")),
            "source": where,
            "population_x_deg": float(pop[0] / ppd),
            "population_y_deg": float(-pop[1] / ppd),
            "suggested_patch_px": patch,
            "n_located": int(located.sum()),
            "declared_rf_x_deg": float(session.attrs.get("rf_x_deg", 0.0)),
            "declared_rf_y_deg": float(session.attrs.get("rf_y_deg", 0.0)),
            "ppd": float(ppd),
            "block_px": int(block),
            "settings": yaml.safe_dump(asdict(s)),
            "gazeem_version": __version__,
            "history": f"gazeem {__version__} locate-fields",
        }
    )
    if located.any():
        log.info(
            "%s: %d of %d units located; population centre (%.3f, %.3f) deg from the reading "
            "(declared: %.3f, %.3f); suggested patch_size %d px",
            where,
            int(located.sum()),
            data.n_units,
            out.attrs["population_x_deg"],
            out.attrs["population_y_deg"],
            out.attrs["declared_rf_x_deg"],
            out.attrs["declared_rf_y_deg"],
            patch,
        )
    return out
