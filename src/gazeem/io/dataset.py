"""The session dataset: gazeem's data contract between ingest and fit.

One xarray Dataset per session (``results/sessions/{session}.nc``). The contract is
documented in ``docs/data-format.md``; :func:`validate_session` enforces it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from gazeem.errors import SessionValidationError

#: variable -> (dims, kind): kind "i" integer, "f" float, "b" bool
REQUIRED_VARS: dict[str, tuple[tuple[str, ...], str]] = {
    "counts": (("time", "unit"), "i"),
    "eye": (("time", "axis"), "f"),
    "eye_valid": (("time",), "b"),
    "fixation": (("time",), "i"),
    "frame": (("time",), "i"),
    "stimulus": (("frame", "row", "col"), "f"),
}
OPTIONAL_VARS: dict[str, tuple[tuple[str, ...], str]] = {
    "calib_target": (("time", "axis"), "f"),
}
_KIND_NAMES = {"i": "integer", "f": "float", "b": "bool"}
REQUIRED_ATTRS = ("session", "bin_s", "ppd", "stim_center_x_deg", "stim_center_y_deg", "lag_bins")


def _where(ds: xr.Dataset) -> str:
    src = (
        ds.encoding.get("source")
        or ds.attrs.get("source")
        or ds.attrs.get("session")
        or "<dataset>"
    )
    return str(src)


def validate_session(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` follows the session contract; return it unchanged.

    Raises
    ------
    SessionValidationError
        Naming the file (or session) and the offending field, with what is expected.
    """
    where = _where(ds)

    def fail(field: str, msg: str) -> None:
        raise SessionValidationError(f"{where}: field '{field}': {msg}")

    for name, (dims, kind) in {**REQUIRED_VARS, **OPTIONAL_VARS}.items():
        if name not in ds.variables:
            if name in REQUIRED_VARS:
                fail(name, f"missing; a session needs {sorted(REQUIRED_VARS)}.")
            continue
        var = ds[name]
        if var.dims != dims:
            fail(name, f"has dims {var.dims}, expected {dims}.")
        dk = var.dtype.kind
        ok = {"i": dk in "iu", "f": dk == "f", "b": dk == "b"}[kind]
        if not ok:
            fail(
                name,
                f"has dtype {var.dtype}, expected {_KIND_NAMES[kind]}.",
            )
    for attr in REQUIRED_ATTRS:
        if attr not in ds.attrs:
            fail(attr, f"global attribute missing; a session needs {list(REQUIRED_ATTRS)}.")
    for attr in ("bin_s", "ppd"):
        v = float(ds.attrs[attr])
        if not np.isfinite(v) or v <= 0:
            fail(attr, f"must be a positive number, got {ds.attrs[attr]!r}.")
    if ds.sizes.get("axis") != 2:
        fail("axis", f"must have length 2 (x, y), got {ds.sizes.get('axis')}.")
    if ds.sizes["unit"] == 0:
        fail("counts", "has zero units; a session needs at least one unit.")
    if ds.sizes["time"] == 0:
        fail("time", "is empty.")
    t = ds["time"].values
    if t.dtype.kind != "f" or not np.all(np.diff(t) > 0):
        fail("time", "must be float seconds, strictly increasing.")

    counts = ds["counts"].values
    if counts.min() < 0:
        fail("counts", f"has negative values (min {counts.min()}); spike counts must be >= 0.")
    valid = ds["eye_valid"].values
    eye = ds["eye"].values
    finite = np.isfinite(eye).all(axis=1)
    if np.any(valid & ~finite):
        fail("eye", f"is NaN/inf at {int(np.sum(valid & ~finite))} bins marked eye_valid=True.")
    if not valid.any():
        fail("eye", "has no valid samples (all NaN or eye_valid all False).")
    fix = ds["fixation"].values
    if fix.min() < -1:
        fail("fixation", "ids must be >= 0, or -1 outside fixations.")
    if np.any((fix >= 0) & ~valid):
        fail("fixation", "assigns a fixation id to bins where eye_valid is False; use -1 there.")
    frame = ds["frame"].values
    n_frames = ds.sizes["frame"]
    if frame.min() < -1 or frame.max() >= n_frames:
        fail("frame", f"indices must be in [-1, {n_frames - 1}] (-1: no frame shown).")
    stim = ds["stimulus"]
    if stim.size and not np.isfinite(stim.isel(frame=slice(0, min(n_frames, 16))).values).all():
        fail("stimulus", "holds NaN or inf.")
    return ds


def write_netcdf_atomic(
    ds: xr.Dataset, path: str | os.PathLike, encoding: dict | None = None
) -> Path:
    """Write ``ds`` with the h5netcdf engine to a temporary file beside ``path``, then rename.

    A killed writer never leaves a partial ``path`` behind.
    """
    from gazeem.io.files import atomic_output

    with atomic_output(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding or {}, invalid_netcdf=False)
    return Path(path)
