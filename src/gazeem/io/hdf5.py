"""The plain HDF5 layout for labs without NWB (documented in ``docs/data-format.md``).

::

    /eye/t            (S,)   float  sample times           attrs: units = "s"
    /eye/xy           (S, 2) float  gaze                   attrs: units = degrees | pixels | meters | radians
    /eye/valid        (S,)   bool   sample is valid (optional; default: xy is finite)
    /spikes/times     (K,)   float  spike times            attrs: units = "s"
    /spikes/unit      (K,)   int    unit id of each spike
    /stimulus/frames  (F, rows, cols)  stimulus (float contrast, or integer luminance)
    /stimulus/t       (F,)   float  frame onset times      attrs: units = "s"
    /calibration/start, /calibration/stop (C,) float s; /calibration/target (C, 2) degrees   (optional)
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from gazeem.io.raw import (
    IngestError,
    RawSession,
    ScaledFrames,
    eye_to_degrees,
    integer_unit_ids,
)
from gazeem.memory import check_allocation

_TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "seconds": 1.0,
    "second": 1.0,
    "ms": 1e-3,
    "milliseconds": 1e-3,
}


def _read(f: h5py.File, path, name: str, kinds: str = "iuf") -> np.ndarray:
    """Read a whole dataset after checking its type (``kinds``: numpy kinds) and size."""
    if name not in f:
        raise IngestError(path, name, "missing; see docs/data-format.md for the plain HDF5 layout.")
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise IngestError(path, name, "is a group; expected a dataset.")
    if ds.dtype.kind not in kinds:
        want = {"iuf": "numbers", "iufb": "numbers or booleans"}.get(kinds, kinds)
        raise IngestError(path, name, f"has dtype {ds.dtype}; expected {want}.")
    check_allocation(
        ds.size * max(ds.dtype.itemsize, 8),
        str(path),
        name,
        f"reading {ds.size:,} values of shape {ds.shape}",
        "the file's declared size is implausible (corrupt?), or split the recording.",
    )
    try:
        return ds[()]
    except (OSError, KeyError, ValueError) as err:
        raise IngestError(
            path, name, f"cannot be read; the file may be truncated or corrupt ({err})."
        ) from None


def _seconds(f: h5py.File, path, name: str) -> np.ndarray:
    v = np.asarray(_read(f, path, name), dtype=np.float64)
    unit = f[name].attrs.get("units", "s")
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    if unit not in _TIME_UNITS:
        raise IngestError(
            path, f"{name}@units", f"time unit {unit!r} is not one of {sorted(_TIME_UNITS)}."
        )
    return v * _TIME_UNITS[unit]


def _shape(f: h5py.File, path, name: str) -> tuple[int, ...]:
    if name not in f:
        raise IngestError(path, name, "missing; see docs/data-format.md for the plain HDF5 layout.")
    if not isinstance(f[name], h5py.Dataset):
        raise IngestError(path, name, "is a group; expected a dataset.")
    return tuple(f[name].shape)


def _length(f: h5py.File, path, name: str) -> int:
    shape = _shape(f, path, name)
    if len(shape) != 1:
        raise IngestError(path, name, f"has shape {shape}; expected one dimension.")
    return shape[0]


def _check_shapes(f: h5py.File, path) -> None:
    """Shapes agree, and what they declare fits in memory, before anything is read.

    A small file can declare billions of samples (a chunked dataset that was never
    filled); reading it would allocate all of them.
    """
    n = _length(f, path, "eye/t")
    for name, want in (("eye/xy", (n, 2)), ("eye/valid", (n,))):
        if name == "eye/valid" and name not in f:
            continue
        got = _shape(f, path, name)
        if got != want:
            raise IngestError(path, name, f"has shape {got}; expected {want} like eye/t {(n,)}.")
    k = _length(f, path, "spikes/times")
    if _shape(f, path, "spikes/unit") != (k,):
        raise IngestError(
            path,
            "spikes/unit",
            f"has shape {_shape(f, path, 'spikes/unit')}; expected {(k,)} like spikes/times.",
        )
    # float64 copies made while reading and converting: ~3 of (t, x, y, valid) per sample
    check_allocation(
        n * 3 * 25 + k * 3 * 16,
        str(path),
        "eye/t" if n * 25 >= k * 16 else "spikes/times",
        f"reading {n:,} eye samples and {k:,} spikes",
        "the file's declared size is implausible (corrupt?), or split the recording.",
    )


def read_hdf5(path, meta) -> RawSession:
    """Open a plain-layout HDF5 file and read a :class:`RawSession`."""
    path = Path(path)
    if not path.exists():
        raise IngestError(path, "path", "no such file.")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise IngestError(
            path, "/", f"not a readable HDF5 file; it may be truncated or corrupt ({err})."
        ) from None
    try:
        _check_shapes(f, path)
        eye_t = _seconds(f, path, "eye/t")
        xy = np.asarray(_read(f, path, "eye/xy"), dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != eye_t.shape[0]:
            raise IngestError(
                path, "eye/xy", f"has shape {xy.shape}; expected ({eye_t.shape[0]}, 2) like eye/t."
            )
        unit = f["eye/xy"].attrs.get("units")
        if unit is None:
            raise IngestError(
                path, "eye/xy@units", "missing: say degrees, pixels, meters or radians."
            )
        unit = unit.decode() if isinstance(unit, bytes) else str(unit)
        frame = f["eye/xy"].attrs.get("reference_frame")
        frame = frame.decode() if isinstance(frame, bytes) else frame
        stated = ("eye/xy@reference_frame", str(frame)) if frame is not None else None
        eye_xy = eye_to_degrees(xy, unit, meta, path, "eye/xy@units", stated=stated)
        valid = np.isfinite(eye_xy).all(axis=1)
        if "eye/valid" in f:
            v = np.asarray(_read(f, path, "eye/valid", "iufb")).astype(bool)
            if v.shape != valid.shape:
                raise IngestError(
                    path, "eye/valid", f"has shape {v.shape}; expected {valid.shape}."
                )
            valid &= v
        eye_xy[~valid] = np.nan
        st = _seconds(f, path, "spikes/times")
        su = np.asarray(_read(f, path, "spikes/unit"))
        if su.shape != st.shape:
            raise IngestError(
                path, "spikes/unit", f"has shape {su.shape}; expected {st.shape} like spikes/times."
            )
        su = integer_unit_ids(su, path, "spikes/unit")
        unit_ids = np.unique(su)
        if unit_ids.size == 0:
            raise IngestError(path, "spikes/unit", "the file has zero units; nothing to fit.")
        order = np.argsort(su, kind="stable")
        bounds = np.searchsorted(su[order], unit_ids, side="left")
        groups = np.split(st[order], bounds[1:])
        spikes = [np.sort(g) for g in groups]
        if "stimulus/frames" not in f:
            raise IngestError(
                path,
                "stimulus/frames",
                "missing; see docs/data-format.md for the plain HDF5 layout.",
            )
        ds = f["stimulus/frames"]
        if not isinstance(ds, h5py.Dataset):
            raise IngestError(path, "stimulus/frames", "is a group; expected a dataset.")
        if ds.ndim != 3:
            raise IngestError(
                path, "stimulus/frames", f"has shape {ds.shape}; expected (frames, rows, cols)."
            )
        frame_t = _seconds(f, path, "stimulus/t")
        if frame_t.shape != (ds.shape[0],):
            raise IngestError(
                path, "stimulus/t", f"has {frame_t.shape[0]} entries for {ds.shape[0]} frames."
            )
        try:
            ds[:1]
        except OSError as err:
            raise IngestError(
                path,
                "stimulus/frames",
                f"cannot be read; the file may be truncated or corrupt ({err}).",
            ) from None
        calib = None
        if "calibration" in f:
            calib = (
                _seconds(f, path, "calibration/start"),
                _seconds(f, path, "calibration/stop"),
                np.asarray(_read(f, path, "calibration/target"), dtype=np.float64).reshape(-1, 2),
            )
        truth = None
        if "truth/gaze" in f:  # at the eye's timestamps, or its own (truth/t)
            tt = np.asarray(_read(f, path, "truth/t"), np.float64) if "truth/t" in f else eye_t
            truth = (tt, np.asarray(_read(f, path, "truth/gaze"), dtype=np.float64))
    except Exception:
        f.close()
        raise
    return RawSession(
        source=str(path),
        eye_t=eye_t,
        eye_xy=eye_xy,
        eye_valid=valid,
        spike_times=spikes,
        unit_ids=unit_ids,
        frames=ScaledFrames(ds, path=path, field="stimulus/frames"),
        frame_t=frame_t,
        calibration=calib,
        truth=truth,
        _close=f.close,
    )


def session_to_hdf5(ds, path, *, eye_samples_per_bin: int = 1, seed: int = 0) -> Path:
    """Write a simulated session in the plain HDF5 layout (atomically)."""
    from gazeem.io.raw_from_session import raw_arrays

    arr = raw_arrays(ds, eye_samples_per_bin=eye_samples_per_bin, seed=seed)
    from gazeem.io.files import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("eye/t", data=arr["eye_t"]).attrs["units"] = "s"
        f.create_dataset("eye/xy", data=arr["eye_xy"]).attrs["units"] = "degrees"
        f.create_dataset("eye/valid", data=np.isfinite(arr["eye_xy"]).all(axis=1))
        times = np.concatenate(arr["spike_times"])
        units = np.concatenate(
            [np.full(len(s), u) for s, u in zip(arr["spike_times"], arr["unit_ids"], strict=True)]
        )
        f.create_dataset("spikes/times", data=times).attrs["units"] = "s"
        f.create_dataset("spikes/unit", data=units)
        fr = arr["frames"]
        f.create_dataset(
            "stimulus/frames", data=fr, chunks=(min(64, len(fr)), *fr.shape[1:]), compression="gzip"
        )
        f.create_dataset("stimulus/t", data=arr["frame_t"]).attrs["units"] = "s"
        if arr["true_xy"] is not None:
            f.create_dataset("truth/gaze", data=arr["true_xy"]).attrs["units"] = "degrees"
            f.create_dataset("truth/t", data=arr["true_t"]).attrs["units"] = "s"
        if arr["calibration"] is not None:
            a, b, tgt = arr["calibration"]
            f.create_dataset("calibration/start", data=a).attrs["units"] = "s"
            f.create_dataset("calibration/stop", data=b).attrs["units"] = "s"
            f.create_dataset("calibration/target", data=tgt).attrs["units"] = "degrees"
    return path
