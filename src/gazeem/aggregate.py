"""The aggregate stage: tracker and RF parameters of every session in one table.

Writes ``params.nc`` (session-level variables on dim ``session``; unit-level ones on dim
``unit_row`` with ``unit_session`` and ``unit_id`` labels) and ``params.tsv`` (one row
per session) and ``units.tsv`` (one row per unit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gazeem import __version__
from gazeem.coords import StimulusGeometry
from gazeem.errors import GazeemError
from gazeem.io.dataset import write_netcdf_atomic
from gazeem.io.files import atomic_output, open_netcdf


def rf_centre_and_size(rf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and size of receptive fields ``(N, lags, P, P)``, pixels.

    Uses the energy ``rf²`` of the lag with the most energy: the centre is its centroid
    relative to the patch centre (x right, y down), the size the square root of its
    mean second moment about that centre (an SD, pixels).
    """
    n, _, p, _ = rf.shape
    energy = (rf**2).sum(axis=(2, 3))
    best = rf[np.arange(n), energy.argmax(1)] ** 2  # (N, P, P)
    total = best.sum(axis=(1, 2))
    yy, xx = np.mgrid[0:p, 0:p].astype(float) - p // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (best * xx).sum(axis=(1, 2)) / total
        cy = (best * yy).sum(axis=(1, 2)) / total
        var = (best * ((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2)).sum(
            axis=(1, 2)
        ) / total
    return np.stack([cx, cy], axis=1), np.sqrt(var / 2)


def summarize_fit(path) -> tuple[dict, pd.DataFrame]:
    """One session's row and its per-unit rows."""
    with open_netcdf(path, "fit result", ("sigma", "offset", "gain", "loglik")) as ds:
        ppd = float(ds.attrs["ppd"])
        geom = StimulusGeometry(
            ppd, (ds.attrs["stim_center_x_deg"], ds.attrs["stim_center_y_deg"]), (0, 0)
        )
        session = str(ds.attrs.get("session") or Path(path).stem)
        off = ds["offset"].values
        gain = ds["gain"].values
        row = {
            "session": session,
            "sigma_deg": float(ds["sigma"]),
            "offset_x_deg": float(off[0]),
            "offset_y_deg": float(off[1]),
            "gain_xx": float(gain[0, 0]),
            "gain_xy": float(gain[0, 1]),
            "gain_yx": float(gain[1, 0]),
            "gain_yy": float(gain[1, 1]),
            "offset_mode": ds.attrs.get("offset_mode", ""),
            "loglik": float(ds["loglik"].values[-1]),
            "loglik_raw_trace": float(ds.attrs.get("loglik_raw_trace", np.nan)),
            "loglik_corrected": float(ds.attrs.get("loglik_corrected", np.nan)),
            "bits_per_spike_gain": float(ds.attrs.get("bits_per_spike_gain", np.nan)),
            "n_iter": int(ds.attrs["n_iter"]),
            "converged": bool(ds.attrs["converged"]),
            "wall_time_s": float(ds.attrs["wall_time_s"]),
            "n_units": int(ds.sizes["unit"]),
            "device": ds.attrs.get("device", ""),
            "gazeem_version": ds.attrs.get("gazeem_version", ""),
        }
        if "true_gaze" in ds:
            m = np.isfinite(ds["gaze_mean"].values).all(axis=1)
            for name, est in (("corrected", ds["gaze_mean"].values), ("raw", ds["eye"].values)):
                d = est[m] - ds["true_gaze"].values[m]
                row[f"rms_{name}_deg"] = float(np.sqrt(((d - d.mean(0)) ** 2).sum(1).mean()))
        units = pd.DataFrame({"session": session, "unit": ds["unit"].values})
        if "rf" in ds:
            for tag, var in (("", "rf"), ("initial_", "rf_initial")):
                c, s = rf_centre_and_size(ds[var].values.astype(np.float64))
                c_deg = geom.px_vector_to_deg(c)  # y up
                units[f"{tag}rf_x_deg"] = c_deg[:, 0]
                units[f"{tag}rf_y_deg"] = c_deg[:, 1]
                units[f"{tag}rf_size_deg"] = s / ppd
                units[f"{tag}rf_peak"] = np.abs(ds[var].values).reshape(len(units), -1).max(1)
            row["rf_size_median_deg"] = float(np.nanmedian(units["rf_size_deg"]))
            row["rf_size_initial_median_deg"] = float(np.nanmedian(units["initial_rf_size_deg"]))
            row["rf_peak_gain_median"] = float(
                np.nanmedian(units["rf_peak"] / units["initial_rf_peak"])
            )
    return row, units


def aggregate(fits: list, out_nc, out_tsv, out_units_tsv=None) -> xr.Dataset:
    """Summarise fit results into ``out_nc`` and ``out_tsv`` (and optionally ``out_units_tsv``)."""
    if not fits:
        raise GazeemError("aggregate needs at least one fit result.")
    rows, unit_tables = zip(*(summarize_fit(p) for p in fits), strict=True)
    table = pd.DataFrame(list(rows))
    if table["session"].duplicated().any():
        raise GazeemError(
            f"aggregate: duplicate sessions {table['session'][table['session'].duplicated()].tolist()}."
        )
    units = pd.concat(unit_tables, ignore_index=True)
    ds = xr.Dataset.from_dataframe(table.set_index("session"))
    for col in units.columns:
        if col not in ("session", "unit"):
            ds[col] = ("unit_row", units[col].to_numpy())
    ds["unit_session"] = ("unit_row", units["session"].astype(str).to_numpy())
    ds["unit_id"] = ("unit_row", units["unit"].to_numpy())
    units_attrs = {
        "sigma_deg": "degree",
        "offset_x_deg": "degree",
        "offset_y_deg": "degree",
        "wall_time_s": "s",
    }
    for name, unit in units_attrs.items():
        ds[name].attrs["units"] = unit
    for name in ds.data_vars:
        if name.endswith("_deg"):
            ds[name].attrs.setdefault("units", "degree")
    ds.attrs.update(
        {
            "title": "gazeem parameters across sessions",
            "Conventions": "CF-1.8",
            "gazeem_version": __version__,
            "source": ", ".join(str(p) for p in fits),
            "history": f"aggregated by gazeem {__version__}",
        }
    )
    write_netcdf_atomic(ds, out_nc)
    _write_tsv(table, out_tsv)
    if out_units_tsv is not None:
        _write_tsv(units, out_units_tsv)
    return ds


def _write_tsv(frame: pd.DataFrame, path) -> None:
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
