"""Where the time of a fit goes: cProfile of one demo-sized fit, top functions by own time."""

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

if __name__ == "__main__":
    print(markdown(run()))
