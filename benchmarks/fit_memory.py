"""Peak resident memory of ingesting and fitting long sessions: flat, not growing, with length.

Simulated sessions with stimulus-driven spikes: 60 Hz frames of 64x64 px, 100 units, a
480 Hz eye trace. The fit runs ``gazeem fit`` in a child process with one EM iteration
(the raw-trace fit, an E-step, an M-step and a final E-step: every stage touches all
the data) and lazily read frames, and reports its peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import md_table


def write_long_session(path: Path, minutes: float) -> None:
    """A simulated session with stimulus-driven spikes (so that posteriors sharpen), as NWB."""
    from tests.conftest import make_session

    from gazeem.io.nwb import session_to_nwb

    ds = make_session(
        "noise", seed=0, n_bins=int(minutes * 3600), ppd=32.0, stim_center_deg=(0.0, 0.0)
    )
    session_to_nwb(ds, path, eye_samples_per_bin=8)  # 480 Hz eye trace


INGEST = """
import sys
from gazeem.ingest import IngestSettings, ingest_session
from gazeem.io.sessions import SessionMeta
meta = SessionMeta(session="long", path=sys.argv[1], format="nwb", ppd=32.0)
ingest_session(meta, sys.argv[2], IngestSettings(gaze_margin_deg=2.0))
"""

FIT = """
import json, resource, sys, time
from gazeem.cli import main
t = time.perf_counter()
rc = main(["fit", sys.argv[1], sys.argv[2], "--set", "max_iter=1", "--set", "tol=0", "--set", "patch_size=16",
           "--set", "window_k=3.0", "--set", "device=cpu", "--set", "frames_in_memory=false"])
print(json.dumps({"rc": rc, "fit_s": time.perf_counter() - t,
                  "fit_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


WRITE = """
import sys
from pathlib import Path
from benchmarks.fit_memory import write_long_session
write_long_session(Path(sys.argv[1]), float(sys.argv[2]))
"""


def measure(minutes: float, workdir: Path) -> dict:
    src, ses, fit = (workdir / f"m{minutes:g}.{ext}" for ext in ("nwb", "nc", "fit.nc"))
    # every step in its own process: on Linux a child's ru_maxrss starts at its parent's
    # RSS at fork (it survives execve), so the parent must stay small
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run(
        [sys.executable, "-c", WRITE, str(src), str(minutes)],
        check=True,
        capture_output=True,
        cwd=root,
    )
    subprocess.run(
        [sys.executable, "-c", INGEST, str(src), str(ses)], check=True, capture_output=True
    )
    src.unlink()
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FIT, str(ses), str(fit)], check=True, capture_output=True, text=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(minutes=minutes, bins=int(minutes * 3600), wall_s=time.perf_counter() - t)
    ses.unlink()
    fit.unlink(missing_ok=True)
    return res


def run(minutes=(7.5, 15, 30, 60)) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as d:
        for m in minutes:
            rows.append(measure(m, Path(d)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows, ["minutes", "bins", "fit_peak_mb", "fit_s"])


if __name__ == "__main__":
    run([float(a) for a in sys.argv[1:]] or (7.5, 15, 30, 60))
