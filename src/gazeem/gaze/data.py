"""Session arrays prepared for the gaze EM: tensors on the device, fixations indexed.

:meth:`GazeData.from_dataset` is the public entry point; it checks the input once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from gazeem.coords import StimulusGeometry
from gazeem.errors import GazeemError
from gazeem.gaze.patches import FrameSource
from gazeem.io.dataset import validate_session


@dataclass(frozen=True)
class GazeGrid:
    """Candidate gaze cells: every integer stimulus pixel in ``[x0, x1] × [y0, y1]``."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def n_cells(self) -> int:
        return self.width * self.height

    def cell_index(self, xy: torch.Tensor) -> torch.Tensor:
        """Flat index ``row * width + col`` of integer stimulus-pixel positions ``(..., 2)``."""
        return (xy[..., 1] - self.y0) * self.width + (xy[..., 0] - self.x0)

    def contains(self, xy: np.ndarray, tol: float = 0.5) -> np.ndarray:
        xy = np.asarray(xy)
        return (
            (xy[..., 0] >= self.x0 - tol)
            & (xy[..., 0] <= self.x1 + tol)
            & (xy[..., 1] >= self.y0 - tol)
            & (xy[..., 1] <= self.y1 + tol)
        )


@dataclass
class GazeData:
    """Everything the gaze EM reads, as tensors.

    Attributes
    ----------
    frames
        Stimulus frames ``(n_frames, rows, cols)``.
    frame
        ``(T,)`` int64 frame shown per bin, -1 for none.
    counts
        ``(T, N)`` spike counts.
    fixation
        ``(T,)`` int64 fixation index ``0..F-1``, -1 outside fixations.
    fit_bins
        ``(T_fit,)`` the bins inside fixations, sorted by fixation then time.
    fix_reading
        ``(F, 2)`` float64 mean tracker reading per fixation, centred pixels.
    fix_calib
        ``(F, 2)`` float64 calibration target per fixation, centred pixels (NaN: none).
    fix_ids
        ``(F,)`` the fixation ids of the source dataset.
    eye_px
        ``(T, 2)`` tracker reading per bin, stimulus pixels (NaN when invalid).
    geometry
        Stimulus placement and resolution.
    """

    frames: FrameSource
    frame: torch.Tensor
    counts: torch.Tensor
    fixation: torch.Tensor
    fit_bins: torch.Tensor
    fix_reading: torch.Tensor
    fix_calib: torch.Tensor
    fix_ids: np.ndarray
    eye_px: np.ndarray
    geometry: StimulusGeometry

    @property
    def n_fixations(self) -> int:
        return int(self.fix_reading.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.counts.shape[1])

    @property
    def is_calibration(self) -> torch.Tensor:
        """``(F,)`` bool: fixations on a known calibration target."""
        return torch.isfinite(self.fix_calib[:, 0])

    @property
    def has_calibration(self) -> bool:
        return bool(self.is_calibration.any())

    def pin_calibration(self, pos: torch.Tensor, centered: bool = True) -> torch.Tensor:
        """``pos (F, K, 2)`` float64 with calibration fixations' cells set to their target.

        The target is in centred pixels (``centered``) or in stimulus pixels. Other
        fixations are left as they are; ``pos`` is changed in place and returned.
        """
        cal = self.is_calibration
        if cal.any():
            target = self.fix_calib[cal]
            if not centered:
                target = target + torch.as_tensor(self.geometry.center_px, dtype=torch.float64)
            pos[cal] = target[:, None, :].expand(-1, pos.shape[1], -1)
        return pos

    @classmethod
    def from_dataset(
        cls,
        ds: xr.Dataset,
        device: torch.device,
        dtype: torch.dtype,
        frames_in_memory: bool | str = True,
    ) -> GazeData:
        """Build from a session dataset (see :func:`gazeem.io.validate_session`).

        ``frames_in_memory``: ``True`` loads the stimulus; ``False`` reads it lazily, a few
        frames at a time; ``"auto"`` loads it when its float32 values take under 1 GiB,
        and otherwise reads it lazily unless its one-byte codes fit
        (:class:`~gazeem.gaze.patches.FrameSource`).
        """
        validate_session(ds)
        geom = StimulusGeometry.from_dataset(ds)
        stim = ds["stimulus"]
        coded = frames_in_memory is not False  # "auto" may still hold one-byte codes
        if frames_in_memory == "auto":
            frames_in_memory = stim.size * 4 < 2**30
        frames_arr = (
            torch.from_numpy(np.asarray(stim.values)) if frames_in_memory else stim.variable
        )
        calib = ds["calib_target"].values if "calib_target" in ds else None
        return cls.from_arrays(
            frames=frames_arr,
            frame=ds["frame"].values,
            counts=ds["counts"].values,
            eye_deg=ds["eye"].values,
            fixation=ds["fixation"].values,
            geometry=geom,
            device=device,
            dtype=dtype,
            calib_deg=calib,
            where=str(ds.encoding.get("source") or ds.attrs.get("session", "session")),
            coded_frames=coded,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        frames,
        frame: np.ndarray,
        counts: np.ndarray,
        eye_deg: np.ndarray,
        fixation: np.ndarray,
        geometry: StimulusGeometry,
        device: torch.device,
        dtype: torch.dtype,
        calib_deg: np.ndarray | None = None,
        where: str = "session",
        coded_frames: bool = True,
    ) -> GazeData:
        """Build from plain arrays; checks shapes and values and says what is wrong.

        Parameters
        ----------
        frames
            ``(n_frames, rows, cols)`` stimulus (tensor, array or lazily indexed array).
        frame
            ``(T,)`` frame index per bin (-1: none).
        counts
            ``(T, N)`` non-negative spike counts.
        eye_deg
            ``(T, 2)`` tracker gaze, degrees, NaN when invalid.
        fixation
            ``(T,)`` fixation id per bin, -1 outside fixations.
        calib_deg
            Optional ``(T, 2)`` calibration target, degrees, NaN outside calibration.
        coded_frames
            Hold a stimulus of at most 256 values as one-byte codes
            (:class:`~gazeem.gaze.patches.FrameSource`).
        """
        frame = np.asarray(frame)
        counts = np.asarray(counts)
        eye_deg = np.asarray(eye_deg, dtype=np.float64)
        fixation = np.asarray(fixation)
        t = frame.shape[0]

        def fail(field: str, msg: str) -> None:
            raise GazeemError(f"{where}: {field}: {msg}")

        if counts.ndim != 2 or counts.shape[0] != t:
            fail(
                "counts",
                f"shape {counts.shape} disagrees with frame {frame.shape}; "
                f"expected (T={t}, n_units).",
            )
        if eye_deg.shape != (t, 2):
            fail(
                "eye",
                f"shape {eye_deg.shape} disagrees with counts {counts.shape}; expected (T={t}, 2).",
            )
        if fixation.shape != (t,):
            fail("fixation", f"shape {fixation.shape}; expected (T={t},).")
        if len(frames.shape) != 3:
            fail("stimulus", f"shape {tuple(frames.shape)}; expected (n_frames, rows, cols).")
        if tuple(frames.shape[1:]) != tuple(geometry.shape):
            fail(
                "stimulus",
                f"frames are {tuple(frames.shape[1:])} but the geometry says {geometry.shape}.",
            )
        if counts.shape[1] == 0:
            fail("counts", "has zero units.")
        if not np.all(np.isfinite(counts)) or counts.min() < 0:
            fail(
                "counts",
                f"must be finite and >= 0 (min {np.nanmin(counts)}); "
                "spike counts cannot be negative.",
            )
        if frame.max() >= frames.shape[0] or frame.min() < -1:
            fail("frame", f"indices must be in [-1, {frames.shape[0] - 1}].")
        finite = np.isfinite(eye_deg).all(axis=1)
        if not finite.any():
            fail("eye", "is NaN everywhere: no valid tracker samples.")
        in_fix = fixation >= 0
        if np.any(in_fix & ~finite):
            fail(
                "fixation",
                f"{int(np.sum(in_fix & ~finite))} bins inside fixations have NaN eye samples.",
            )
        if not in_fix.any():
            fail("fixation", "the session has no fixations (all ids are -1); nothing to fit.")

        fix_ids, fix_index = np.unique(fixation[in_fix], return_inverse=True)
        fix_full = np.full(t, -1, dtype=np.int64)
        fix_full[in_fix] = fix_index
        eye_px = geometry.deg_to_px(eye_deg)
        eye_c = geometry.px_to_centered(eye_px)
        n_fix = fix_ids.size
        reading = fixation_means(fix_index, eye_c[in_fix], n_fix)
        calib = np.full((n_fix, 2), np.nan)
        if calib_deg is not None:
            calib_deg = np.asarray(calib_deg, dtype=np.float64)
            if calib_deg.shape != (t, 2):
                fail("calib_target", f"shape {calib_deg.shape}; expected (T={t}, 2).")
            cal_c = geometry.px_to_centered(geometry.deg_to_px(calib_deg))
            has = in_fix & np.isfinite(cal_c).all(axis=1)
            for a in range(2):
                s = np.bincount(fix_full[has], weights=cal_c[has, a], minlength=n_fix)
                k = np.bincount(fix_full[has], minlength=n_fix)
                calib[:, a] = np.where(k > 0, s / np.maximum(k, 1), np.nan)
        order = np.argsort(fix_full[in_fix], kind="stable")
        fit_bins = np.flatnonzero(in_fix)[order]
        return cls(
            frames=FrameSource(frames, device, dtype, coded=coded_frames),
            frame=torch.as_tensor(frame.astype(np.int64), device=device),
            counts=torch.as_tensor(counts.astype(np.float64), device=device).to(dtype),
            fixation=torch.as_tensor(fix_full, device=device),
            fit_bins=torch.as_tensor(fit_bins, device=device),
            fix_reading=torch.as_tensor(reading, dtype=torch.float64),
            fix_calib=torch.as_tensor(calib, dtype=torch.float64),
            fix_ids=fix_ids,
            eye_px=eye_px,
            geometry=geometry,
        )


def fixation_means(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``(n, 2)`` float64 mean of ``values (M, 2)`` over the rows of each fixation
    ``index (M,)`` in ``0..n-1`` (every fixation has a row)."""
    count = np.bincount(index, minlength=n).astype(np.float64)
    return np.stack(
        [np.bincount(index, weights=values[:, a], minlength=n) / count for a in range(2)], axis=1
    )


def invalid_between(eye_px: np.ndarray, after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: an invalid reading (NaN: a blink, a lost track) strictly between
    bins ``after (P,)`` and ``before (P,)`` of ``eye_px (T, 2)``."""
    invalid = np.concatenate([[0], np.cumsum(~np.isfinite(eye_px[:, 0]))])
    return invalid[before] - invalid[after + 1] > 0
