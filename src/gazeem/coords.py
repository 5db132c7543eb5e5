"""Conversions between screen degrees and stimulus pixels.

Conventions (see ``docs/architecture.md``):

* **Degrees** are screen coordinates as eye trackers report them: x to the right,
  y *up*, relative to the screen centre.
* **Stimulus pixels** address the stimulus lattice: x = column (right), y = row (down);
  pixel ``(0, 0)`` is the top-left pixel's centre.
* **Centred pixels** are stimulus pixels relative to the stimulus centre
  ``((cols - 1) / 2, (rows - 1) / 2)``; the tracker model works in these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StimulusGeometry:
    """Where the stimulus sits on the screen, and its resolution.

    Attributes
    ----------
    ppd
        Stimulus pixels per degree of visual angle.
    center_deg
        Screen position ``(x, y)`` of the stimulus centre, degrees.
    shape
        ``(rows, cols)`` of a stimulus frame, pixels.
    rf_offset_deg
        Centre of the units' receptive-field region relative to the gaze point, degrees
        (x right, y up): the retinal patch of gaze ``z`` is cut at ``z`` plus this offset.
        Fields 0.5–5° from the fovea are usual; 0 puts the patch on the gaze point.
    """

    ppd: float
    center_deg: tuple[float, float]
    shape: tuple[int, int]
    rf_offset_deg: tuple[float, float] = (0.0, 0.0)

    @property
    def rf_offset_px(self) -> tuple[int, int]:
        """The receptive-field region's offset in whole stimulus pixels ``(x, y down)``.

        The sub-pixel rest is absorbed by the fields themselves.
        """
        ox, oy = self.rf_offset_deg
        return round(ox * self.ppd), round(-oy * self.ppd)

    @property
    def center_px(self) -> np.ndarray:
        """Stimulus-pixel position of the stimulus centre, ``(x, y)``."""
        rows, cols = self.shape
        return np.array([(cols - 1) / 2.0, (rows - 1) / 2.0])

    def deg_to_px(self, xy_deg: np.ndarray) -> np.ndarray:
        """Screen degrees ``(..., 2)`` to stimulus pixels ``(..., 2)``."""
        xy = np.asarray(xy_deg, dtype=np.float64)
        cx, cy = self.center_deg
        out = np.empty_like(xy)
        out[..., 0] = self.center_px[0] + (xy[..., 0] - cx) * self.ppd
        out[..., 1] = self.center_px[1] - (xy[..., 1] - cy) * self.ppd
        return out

    def px_to_deg(self, xy_px: np.ndarray) -> np.ndarray:
        """Stimulus pixels ``(..., 2)`` to screen degrees ``(..., 2)``."""
        xy = np.asarray(xy_px, dtype=np.float64)
        cx, cy = self.center_deg
        out = np.empty_like(xy)
        out[..., 0] = cx + (xy[..., 0] - self.center_px[0]) / self.ppd
        out[..., 1] = cy - (xy[..., 1] - self.center_px[1]) / self.ppd
        return out

    def px_vector_to_deg(self, d_px: np.ndarray) -> np.ndarray:
        """A displacement ``(..., 2)`` in pixels (y down) to degrees (y up)."""
        d = np.asarray(d_px, dtype=np.float64) / self.ppd
        d = d.copy()
        d[..., 1] *= -1.0
        return d

    @property
    def half_extent_deg(self) -> np.ndarray:
        """Half the stimulus's width and height ``(x, y)``, degrees."""
        rows, cols = self.shape
        return np.array([cols, rows]) / (2 * self.ppd)

    def px_to_centered(self, xy_px: np.ndarray) -> np.ndarray:
        return np.asarray(xy_px, dtype=np.float64) - self.center_px

    def centered_to_px(self, xy_c: np.ndarray) -> np.ndarray:
        return np.asarray(xy_c, dtype=np.float64) + self.center_px

    @classmethod
    def from_dataset(cls, ds) -> StimulusGeometry:
        """Read ``ppd``, ``stim_center_x_deg``, ``stim_center_y_deg`` and the frame shape."""
        return cls(
            ppd=float(ds.attrs["ppd"]),
            center_deg=(float(ds.attrs["stim_center_x_deg"]), float(ds.attrs["stim_center_y_deg"])),
            shape=(int(ds.sizes["row"]), int(ds.sizes["col"])),
            rf_offset_deg=(
                float(ds.attrs.get("rf_x_deg", 0.0)),
                float(ds.attrs.get("rf_y_deg", 0.0)),
            ),
        )


def spread_rounding(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``floor(x + u_k)``: whole pixels whose mean over ``k = 0, 1, …`` is ``x``.

    A position between pixels rounds to one side for every ``k`` under ``np.rint`` (half to
    even, so the side depends on parity); here ``u_k`` runs through the base-2 van der
    Corput sequence (0, ½, ¼, ¾, …), so a fraction ``x − floor(x)`` of the ``k`` round up:
    rounding that is unbiased over repeats without drawing random numbers. ``x`` is first
    rounded to 1e-6 px, so that a half pixel reached through a conversion stays a half.
    ``x (..., 2)`` float, ``k`` integer, broadcast against ``x[..., 0]``.
    """
    k = np.asarray(k, dtype=np.int64)
    u = np.zeros(k.shape)
    scale, rest = 0.5, k.copy()
    while bool((rest > 0).any()):
        u += scale * (rest & 1)
        rest, scale = rest >> 1, scale / 2
    x = np.round(np.asarray(x, dtype=np.float64), 6)
    return np.floor(x + u[..., None]).astype(np.int64)
