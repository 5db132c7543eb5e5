"""Time of a full EM iteration (E + M) as bins, units, window and screen size grow.

Each row fits a simulated session for a fixed 3 iterations and reports the mean time of
iterations 2 and 3 (after the raw-trace fit and the first, broadest posterior).
"""

from __future__ import annotations

import warnings

import numpy as np
from tests.conftest import make_session

from benchmarks.common import md_table
from gazeem.gaze.estimator import GazeEM

BASE = dict(n_bins=4000, n_units=16, patch_size=16, stim=64, half=10)


def one(n_bins, n_units, patch_size, stim, half, seed=0) -> dict:
    ds = make_session(
        "demo",
        seed=seed,
        n_bins=n_bins,
        n_units=n_units,
        patch_size=patch_size,
        stim_rows=stim,
        stim_cols=stim,
        gaze_range_px=min(20.0, stim / 2 - half - 2),
    )
    est = GazeEM(
        patch_size=patch_size, window_min=half, window_max=half, max_iter=3, tol=0, device="cpu"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(ds)
    secs = est.state_.seconds_per_iter
    return {
        "bins": n_bins,
        "units": n_units,
        "window": 2 * half + 1,
        "screen (px)": f"{stim}x{stim}",
        "s / iteration": float(np.mean(secs[2:])),
        "s / iteration / 1000 bins": float(np.mean(secs[2:])) / n_bins * 1000,
    }


def run() -> dict[str, list[dict]]:
    b = BASE
    return {
        "bins": [
            one(n, b["n_units"], b["patch_size"], b["stim"], b["half"]) for n in (2000, 4000, 8000)
        ],
        "units": [one(b["n_bins"], u, b["patch_size"], b["stim"], b["half"]) for u in (8, 16, 32)],
        "window": [
            one(b["n_bins"], b["n_units"], b["patch_size"], b["stim"], h) for h in (5, 10, 15)
        ],
        "screen": [
            one(b["n_bins"], b["n_units"], b["patch_size"], s, b["half"]) for s in (64, 128, 256)
        ],
    }


def demo_iterations(fit_dir="results/fits") -> list[dict]:
    """Iterations to convergence of the demo's fits (after ``make run``)."""
    from pathlib import Path

    import xarray as xr

    rows = []
    for p in sorted(Path(fit_dir).glob("*.nc")):
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            rows.append(
                {
                    "session": p.stem,
                    "iterations": int(ds.attrs["n_iter"]),
                    "converged": bool(ds.attrs["converged"]),
                    "fit wall time (s)": float(ds.attrs["wall_time_s"]),
                }
            )
    return rows


def markdown(r: dict) -> str:
    return "\n\n".join(f"By {k}:\n\n" + md_table(v) for k, v in r.items())


if __name__ == "__main__":
    print(markdown(run()))
