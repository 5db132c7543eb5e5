"""Free viewing of photographs held for seconds: held-frame pooling against per-bin rows.

The test's 1-minute session (``PHOTOGRAPH_SESSION``: six photographs held 2 s each, 48 units,
128 px stimulus)
fitted twice in one run, side by side: with :class:`gazeem.gaze.batches.Runs` pooling
(the default) and with it turned off, for the same number of EM iterations.
"""

from __future__ import annotations

from tests.conftest import make_session
from tests.gaze.realistic import PHOTOGRAPH_SESSION

from benchmarks.common import md_table, time_ratios, timed_fit_with
from gazeem.gaze import batches


def run(n_bins: int = 3600, iters: int = 8) -> list[dict]:
    ds = make_session("small", seed=1, **{**PHOTOGRAPH_SESSION, "n_bins": n_bins})
    rows = []
    for label, pool_below in (("pooled runs", batches.POOL_BELOW), ("a row per bin", -1.0)):
        est, seconds = timed_fit_with(ds, batches, "POOL_BELOW", pool_below, iters)
        rows.append(
            {
                "rows": label,
                "bins": n_bins,
                "iterations": est.n_iter_,
                "seconds": round(seconds, 1),
                "log-likelihood": float(est.loglik_[-1]),
            }
        )
    time_ratios(rows, "time / pooled", key="seconds", digits=1)
    for r in rows:
        r["log-lik. − pooled (nats)"] = f"{r['log-likelihood'] - rows[0]['log-likelihood']:+.2f}"
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows)
