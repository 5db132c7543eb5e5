"""The response M-step by windows against the pair cache (issue 19), side by side.

Each session is fitted twice in one run for the same number of EM iterations: with the
M-step by windows (:mod:`gazeem.gaze.window_mstep`) and with the (bin, cell) pair
batches and their patch cache (the default). Sessions: issue 13's 2-minute noise
session with its offset geometry, and the 1-minute photograph session (pooled runs);
each also with a 64 MB cache, as a long session sees it once its pairs outgrow the
cache.
"""

from __future__ import annotations

from tests.conftest import make_session
from tests.gaze.realistic import OFFSET_SESSION, PHOTOGRAPH_SESSION, TWO_MINUTES

from benchmarks.common import md_table, time_ratios, timed_fit_with
from gazeem.gaze import fixation

SESSIONS = {
    "noise, 2 min": {**TWO_MINUTES, **OFFSET_SESSION},
    "photographs, 1 min": PHOTOGRAPH_SESSION,
}


def run(iters: int = 8, cache_mbs=(1024, 64)) -> list[dict]:
    rows = []
    for name, kw in SESSIONS.items():
        ds = make_session("small", seed=1, **kw)
        for cache_mb in cache_mbs:
            pair = []
            for form, window in (("windows", True), ("pairs", False)):
                est, seconds = timed_fit_with(
                    ds, fixation, "WINDOW_MSTEP", window, iters, cache_mb=cache_mb
                )
                pair.append(
                    {
                        "session": name,
                        "cache (MB)": cache_mb,
                        "M-step": form,
                        "iterations": est.n_iter_,
                        "fit (s)": round(seconds, 1),
                        "log-likelihood": round(float(est.loglik_[-1]), 1),
                    }
                )
            time_ratios(pair, "time / windows")
            for r in pair:
                r["log-lik. − windows (nats)"] = (
                    f"{r['log-likelihood'] - pair[0]['log-likelihood']:+.1f}"
                )
            rows += pair
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows)


if __name__ == "__main__":
    print(markdown(run()))
