"""Where the time of a fit goes: cProfile of one demo-sized fit, top functions by own time;
and, by stage, of ``gazeem fit`` on a whole-fit noise session of a given length.

    python -m benchmarks.profile_fit 10 30    # stages at 10 and 30 minutes, 3 iterations
"""

from __future__ import annotations

import cProfile
import pstats
import warnings

from tests.conftest import make_session

from benchmarks.common import md_table
from gazeem.gaze.estimator import GazeEM


def run(n_bins: int = 4000) -> list[dict]:
    ds = make_session("demo", seed=1, n_bins=n_bins, gaze_range_px=14.0, rf_spread_px=2.0)
    est = GazeEM(patch_size=16, window_k=3.0, max_iter=8, tol=0, device="cpu")
    prof = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof.enable()
        est.fit(ds)
        prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())
    rows = []
    for (file, line, fn), (_cc, nc, tt, _ct, _) in sorted(
        stats.stats.items(), key=lambda kv: -kv[1][2]
    )[:10]:
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({fn})",
                "own time (s)": tt,
                "share": f"{tt / total:.0%}",
                "calls": nc,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows)


from pathlib import Path  # noqa: E402

#: the stages of a fit, as (label, function name in the profile)
STAGES = (
    ("whole fit", "cmd_fit"),
    ("EM (E- and M-steps)", "run_em"),
    ("held-out check", "heldout_comparison"),
    ("… its tracker agreement", "tracker_agreement"),
    ("… its re-inferences", "_reinfer"),
    ("cross-fitted sub-pixel scoring", "refine_subpixel"),
    ("counting held-frame runs", "_runs_of"),
    ("reading and encoding the session", "from_dataset"),
)


def stages(minutes: float, max_iter: int = 3) -> dict:
    """Cumulative seconds of each stage of ``gazeem fit`` (per fixation, ``max_iter``
    iterations) on the whole-fit noise session of ``minutes``, and each EM step's seconds."""
    import tempfile

    import xarray as xr

    from benchmarks.whole_fit import INGEST, WRITE, fit_settings, run_py
    from gazeem.cli import main

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as d:
        src, ses, out = (Path(d) / f"s.{ext}" for ext in ("nwb", "nc", "fit.nc"))
        geometry = run_py(WRITE, "noise", minutes, src).strip().splitlines()[-1]
        run_py(INGEST, src, ses, geometry)
        args = [*fit_settings("noise", "fixation"), f"max_iter={max_iter}"]
        prof = cProfile.Profile()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prof.enable()
            main(["fit", str(ses), str(out), *[a for k in args for a in ("--set", k)]])
            prof.disable()
        with xr.open_dataset(out, engine="h5netcdf") as f:
            steps = [round(float(v), 1) for v in f["seconds_per_iter"].values]
    cum: dict[str, float] = {}
    for (_file, _line, fn), (_cc, _nc, _tt, ct, _) in pstats.Stats(prof).stats.items():
        cum[fn] = max(cum.get(fn, 0.0), ct)
    row = {"minutes": minutes, "EM step seconds": steps}
    row.update({label: round(cum.get(fn, 0.0), 1) for label, fn in STAGES})
    return row


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) > 1:
        for m in sys.argv[1:]:
            print(json.dumps(stages(float(m))), flush=True)
    else:
        print(markdown(run()))
