"""Whole fits, to convergence, against the recording's own duration (issue 19, target 1).

Each session is simulated, written to NWB with pynwb, ingested with ``gazeem ingest``'s
code, and fitted by ``gazeem fit`` at the defaults (``max_iter`` 50, ``tol`` 1e-5 nats
per bin; the gaze grid 8 px wider than the stimulus, as a few readings of the noise
sessions fall just outside it) in a child process of its own, which reports its peak RSS. Two stimuli:

- ``noise``: 60 Hz binary noise, 64×64 px, 100 units, 16 px fields (``PRESETS["noise"]``);
- ``photographs``: free viewing of 128×128 px photographs held 2 s each, 48 units,
  20 px fields 7.8 px from the gaze (the photograph test's session, ``PHOTOGRAPH_SESSION``).

Both latents are fitted on every session (``latent: fixation`` and ``latent: bin``).
The accuracy is the RMS distance of the posterior-mean gaze from the true gaze over the
fitted bins, next to the raw tracker's, so that a faster fit cannot hide a worse one.
``recording / fit`` above 1 means the fit took less time than the recording.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import md_table

ROOT = Path(__file__).resolve().parents[1]

WRITE = """
import json, sys
from pathlib import Path
from tests.conftest import make_session
from tests.gaze.realistic import PHOTOGRAPH_SESSION
from gazeem.io.nwb import session_to_nwb
stimulus, minutes, path = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
n_bins = int(minutes * 3600)
if stimulus == "noise":
    ds = make_session("noise", seed=0, n_bins=n_bins, ppd=32.0, stim_center_deg=(0.0, 0.0))
else:
    ds = make_session("small", seed=1, **{**PHOTOGRAPH_SESSION, "n_bins": n_bins})
session_to_nwb(ds, path, eye_samples_per_bin=4 if stimulus == "photographs" else 8)
keys = ("ppd", "stim_center_x_deg", "stim_center_y_deg", "rf_x_deg", "rf_y_deg")
geometry = {k: float(ds.attrs[k]) for k in keys}
if stimulus == "photographs":  # frames held for 2 s: bins at the simulation's, not the frames'
    geometry["bin_s"] = float(ds.attrs["bin_s"])
print(json.dumps(geometry))
"""

INGEST = """
import json, sys
from gazeem.ingest import IngestSettings, ingest_session
from gazeem.io.sessions import SessionMeta
src, out, geometry = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ingest_session(SessionMeta(session="whole", path=src, format="nwb", **geometry), out,
               IngestSettings(gaze_margin_deg=2.0))
"""

FIT = """
import json, resource, sys, time
from gazeem.cli import main
ses, out, settings = sys.argv[1], sys.argv[2], sys.argv[3:]
t = time.perf_counter()
rc = main(["fit", ses, out, *[a for kv in settings for a in ("--set", kv)]])
print(json.dumps({"rc": rc, "fit_s": time.perf_counter() - t,
                  "fit_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
sys.exit(rc)
"""

PATCH = {"noise": 16, "photographs": 20}


def fit_settings(stimulus: str, latent: str) -> list[str]:
    """``gazeem fit --set`` values of the whole fits: the defaults but for these."""
    return [f"latent={latent}", f"patch_size={PATCH[stimulus]}", "device=cpu", "grid_margin_px=8"]


def accuracy(session: Path, fit: Path) -> dict:
    """RMS error (px) of the fit's posterior mean and of the raw reading against the truth,
    over the bins where both exist."""
    import numpy as np
    import xarray as xr
    from tests.gaze.realistic import rms, true_px

    from gazeem.coords import StimulusGeometry

    with (
        xr.open_dataset(session, engine="h5netcdf") as s,
        xr.open_dataset(fit, engine="h5netcdf") as f,
    ):
        truth = true_px(s)
        raw = StimulusGeometry.from_dataset(s).deg_to_px(s["eye"].values)
        est = f["gaze_mean_px"].values
        steps = f["seconds_per_iter"].values
        both = (np.isfinite(est).all(1) & np.isfinite(raw).all(1))[:, None]
        return {
            "anneal_steps": int(f.attrs.get("anneal_steps", 0)),
            "iterations": int(f.attrs.get("n_iter", -1)),
            "converged": bool(f.attrs.get("converged", False)),
            "on_gaze": bool(f.attrs.get("converged_on_gaze", 0)),
            "split": int(f.attrs.get("n_split_fixations", 0)),
            "em_s": round(float(np.nansum(steps)), 1),
            "step_s": [round(float(v), 1) for v in steps],
            "rms_px": round(rms(np.where(both, est, np.nan), truth), 3),
            "raw_rms_px": round(rms(np.where(both, raw, np.nan), truth), 3),
        }


def run_py(code: str, *args) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(f"{args}: {out.stderr[-2000:]}")
    return out.stdout


def measure(stimulus: str, minutes: float, latents, workdir: Path) -> list[dict]:
    src, ses = workdir / f"{stimulus}{minutes:g}.nwb", workdir / f"{stimulus}{minutes:g}.nc"
    # every step in its own process: a child's ru_maxrss starts at its parent's RSS
    geometry = run_py(WRITE, stimulus, minutes, src).strip().splitlines()[-1]
    run_py(INGEST, src, ses, geometry)
    src.unlink()
    rows = []
    for latent in latents:
        fit = workdir / f"{stimulus}{minutes:g}.{latent}.fit.nc"
        t = time.perf_counter()
        out = run_py(FIT, ses, fit, *fit_settings(stimulus, latent))
        res = json.loads(out.strip().splitlines()[-1])
        wall = time.perf_counter() - t
        row = {"stimulus": stimulus, "minutes": minutes, "latent": latent}
        row.update(accuracy(ses, fit))
        row.update(
            fit_s=round(res["fit_s"], 1),
            process_s=round(wall, 1),
            fit_peak_mb=round(res["fit_peak_mb"]),
            recording_over_fit=round(minutes * 60 / res["fit_s"], 2),
            s_per_iteration=round(
                res["fit_s"] / max(row["iterations"] + row["anneal_steps"], 1), 1
            ),
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
        fit.unlink()
    ses.unlink()
    return rows


def run(sessions=(("noise", 10), ("photographs", 10)), latents=("fixation", "bin")) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as d:
        for stimulus, minutes in sessions:
            rows += measure(stimulus, minutes, latents, Path(d))
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(
        rows,
        [
            "stimulus",
            "minutes",
            "latent",
            "anneal_steps",
            "iterations",
            "converged",
            "on_gaze",
            "split",
            "fit_s",
            "em_s",
            "recording_over_fit",
            "s_per_iteration",
            "fit_peak_mb",
            "rms_px",
            "raw_rms_px",
        ],
    )


if __name__ == "__main__":
    # python -m benchmarks.whole_fit noise:10 photographs:10 [--latent fixation]
    args = [a for a in sys.argv[1:] if not a.startswith("--latent=")]
    lat = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--latent=")]
    ses = [(a.split(":")[0], float(a.split(":")[1])) for a in args] or [("noise", 10)]
    print(markdown(run(ses, lat or ("fixation", "bin"))))
