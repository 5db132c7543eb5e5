"""A recording as read from its source file, before binning.

Readers (:mod:`gazeem.io.nwb`, :mod:`gazeem.io.hdf5`) fill a :class:`RawSession`;
:mod:`gazeem.preprocess` turns it into a session dataset. Time is float64 seconds on
the source file's clock; the eye trace is already in screen degrees (x right, y up).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gazeem.errors import GazeemError


class IngestError(GazeemError):
    """A source file cannot be ingested; the message names the file and the field."""

    def __init__(self, path, fld: str, msg: str) -> None:
        super().__init__(f"{path}: field '{fld}': {msg}")
        self.path, self.field = str(path), fld


@dataclass
class RawSession:
    """Everything ingest needs from one source file.

    Attributes
    ----------
    source
        Path of the source file.
    eye_t
        ``(S,)`` eye sample times, s, strictly increasing.
    eye_xy
        ``(S, 2)`` gaze, screen degrees (x right, y up); NaN where invalid.
    eye_valid
        ``(S,)`` bool.
    spike_times
        One array of spike times (s) per unit.
    unit_ids
        ``(N,)`` unit ids from the source.
    frames
        ``(F, rows, cols)`` stimulus contrast, lazily indexable (``frames[a:b]``).
    frame_t
        ``(F,)`` frame onset times, s.
    calibration
        Optional ``(start (C,), stop (C,), target (C, 2) degrees)`` intervals during
        which the animal fixated a known target.
    """

    source: str
    eye_t: np.ndarray
    eye_xy: np.ndarray
    eye_valid: np.ndarray
    spike_times: list[np.ndarray]
    unit_ids: np.ndarray
    frames: object
    frame_t: np.ndarray
    calibration: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    truth: tuple[np.ndarray, np.ndarray] | None = None
    _close: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def frames_field(self) -> str:
        """The source field the frames come from, for messages."""
        return getattr(self.frames, "field", "stimulus")

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScaledFrames:
    """A lazily indexed frame array mapped to contrast: ``value * scale + offset``, float32.

    Integer images (e.g. uint8) are mapped so that mid-grey is 0 and the full range ±1.
    ``path`` and ``field`` name the source in errors (a read that fails on a corrupt
    chunk, a conversion that is not a finite number).
    """

    def __init__(
        self, data, conversion: float = 1.0, offset: float = 0.0, *, path="", field="stimulus"
    ) -> None:
        self.data = data
        self.path, self.field = str(path), field
        self.shape = tuple(int(s) for s in data.shape)
        dt = np.dtype(data.dtype)
        if dt.kind not in "uif":
            raise IngestError(path, field, f"has dtype {dt}; frames must be numbers.")
        if dt.kind in "ui":
            info = np.iinfo(dt)
            mid = (float(info.max) + float(info.min)) / 2
            half = (float(info.max) - float(info.min)) / 2
            self.scale, self.offset = 1.0 / half, -mid / half
        else:
            self.scale, self.offset = float(conversion), float(offset)
        check_scaling(path, field.removesuffix(".data"), self.scale, self.offset)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        try:
            raw = np.asarray(self.data[idx], dtype=np.float64)
        except (OSError, ValueError) as err:  # a failed HDF5 filter (corrupt chunk) is OSError
            raise IngestError(
                self.path,
                self.field,
                f"cannot be read at frames {_describe(idx)}; the file may be corrupt "
                f"({type(err).__name__}: {' '.join(str(err).split())[:160]}).",
            ) from None
        return (raw * self.scale + self.offset).astype(np.float32)


def check_scaling(path, series: str, conversion: float, offset: float) -> None:
    """A series' ``value * conversion + offset`` needs a finite, non-zero conversion and a
    finite offset (an NWB ``conversion`` of NaN or 0 would silently blank the series)."""
    for name, v in (("conversion", conversion), ("offset", offset)):
        if not np.isfinite(v) or (name == "conversion" and v == 0):
            extra = ", non-zero" if name == "conversion" else ""
            raise IngestError(
                path, f"{series}.{name}", f"is {v}; it must be a finite{extra} number."
            )


def _describe(idx) -> str:
    if isinstance(idx, slice):
        return f"{idx.start}–{idx.stop}"
    return str(idx)[:40]


def integer_unit_ids(ids: np.ndarray, path, fld: str) -> np.ndarray:
    """Unit ids as integers; float ids are accepted only when they are whole numbers.

    Ids such as 3.5 or NaN would otherwise be grouped silently (``np.unique`` on floats)
    or cast to the wrong unit.
    """
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind != "f":
        raise IngestError(path, fld, f"has dtype {ids.dtype}; unit ids must be integers.")
    bad = ~np.isfinite(ids) | (ids != np.round(ids))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IngestError(
            path,
            fld,
            f"unit ids must be whole numbers; entry {i} is {ids[i]!r} "
            f"({int(bad.sum())} such entries).",
        )
    return ids.astype(np.int64)


EYE_UNITS = {
    "degrees": "deg",
    "degree": "deg",
    "deg": "deg",
    "degrees of visual angle": "deg",
    "visual degrees": "deg",
    "radians": "rad",
    "radian": "rad",
    "rad": "rad",
    "pixels": "px",
    "pixel": "px",
    "px": "px",
    "meters": "m",
    "meter": "m",
    "metres": "m",
    "metre": "m",
    "m": "m",
}


def stated_y_direction(text: str | None) -> str | None:
    """``"up"`` or ``"down"`` when a free-text frame (NWB ``reference_frame``) states it."""
    m = re.search(
        r"\by[\s_-]*(?:axis)?[\s:=-]*(?:points?\s+|pointing\s+|is\s+)?(up|down)(?:ward)?s?\b",
        text or "",
        re.I,
    )
    return m.group(1).lower() if m else None


def eye_to_degrees(
    xy: np.ndarray, unit: str, meta, path, fld: str, stated: tuple[str, str] | None = None
) -> np.ndarray:
    """Convert an eye trace ``(S, 2)`` in the source unit to screen degrees (x right, y up).

    Pixels are *screen* pixels from the corner or centre named by ``eye_origin``
    (``screen_ppd``, ``screen_width_px``, ``screen_height_px`` in the session table);
    meters are positions on the screen from its centre (``viewing_distance_m``). The y
    direction is ``eye_y_direction`` in the table, by default down for pixels and up
    otherwise. ``stated = (field, text)`` is what the file says of its frame (NWB
    ``reference_frame``): a y direction there that contradicts the table, or that the
    table leaves to a default it contradicts, stops with an error naming both.
    """
    kind = EYE_UNITS.get(str(unit).strip().lower())
    if kind is None:
        raise IngestError(
            path, fld, f"unit {unit!r} is not one of degrees, radians, pixels or meters."
        )
    given = getattr(meta, "eye_y_direction", None)
    origin = getattr(meta, "eye_origin", None) or "top-left"
    # screen pixels from the top-left corner count y down (EyeLink, most toolkits)
    y_dir = given or ("down" if kind == "px" and origin == "top-left" else "up")
    if stated is not None and (says := stated_y_direction(stated[1])) and says != y_dir:
        told = (
            f"sessions.tsv says eye_y_direction={given}"
            if given
            else f"sessions.tsv gives no eye_y_direction, and the default for {unit} is y {y_dir}"
        )
        raise IngestError(
            path,
            stated[0],
            f"says y {says} ({stated[1]!r}), but {told}; set eye_y_direction to the direction "
            "the tracker really uses.",
        )
    xy = np.asarray(xy, dtype=np.float64)
    if kind == "deg":
        out = xy.copy()
    elif kind == "rad":
        out = np.degrees(xy)
    elif kind == "px":
        need = ("screen_ppd", "screen_width_px", "screen_height_px")
        if any(getattr(meta, k, None) is None for k in need):
            raise IngestError(
                path,
                fld,
                f"the eye trace is in pixels; give {', '.join(need)} in sessions.tsv to convert it.",
            )
        x0, y0 = (0.0, 0.0) if origin == "center" else (meta.screen_width_px / 2, 0.0)
        if origin != "center":
            # from a top corner, y down reaches the centre at +H/2; from a bottom one, y up does
            y0 = meta.screen_height_px / 2
        out = np.empty_like(xy)
        out[:, 0] = (xy[:, 0] - x0) / meta.screen_ppd
        out[:, 1] = (xy[:, 1] - y0) / meta.screen_ppd
    else:
        d = getattr(meta, "viewing_distance_m", None)
        if d is None:
            raise IngestError(
                path,
                fld,
                "the eye trace is in meters (some tools write this by default) and no conversion "
                "is given: set viewing_distance_m in sessions.tsv (meters on the screen from its "
                "centre), or write the trace in degrees.",
            )
        out = np.degrees(np.arctan2(xy, float(d)))
    if y_dir == "down":
        out[:, 1] = -out[:, 1]
    return out
