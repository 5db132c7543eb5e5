"""EM with the translation gauge held at every M-step against EM left free (issue 19).

Each session is fitted twice in one run, to convergence (the default ``tol``,
``max_iter: 80``): with :meth:`gazeem.gaze.fixation.FixationProblem.hold_gauge` after
every M-step (the default) and without it (the sub-pixel centring only after EM, as
before). Sessions: the fixation task of ``tests/gaze/test_fixation_task.py`` with the
per-bin chain, and issue 14's 2-minute session (drift 0.05 px per bin) with the
per-fixation latent. Accuracy is the RMS error of the reported gaze against the truth,
and about the gaze's common offset from the truth (what the gauge cannot change).
"""

from __future__ import annotations

import numpy as np
from tests.conftest import make_session
from tests.gaze.realistic import OFFSET_SESSION, TWO_MINUTES, true_px
from tests.gaze.test_fixation_task import TASK

from benchmarks.common import md_table, time_ratios, timed_fit_with
from gazeem.gaze import fixation
from gazeem.gaze.estimator import GazeEM

#: GazeEM's own convergence rule and held-out check, as a user's fit runs
TO_CONVERGENCE = dict(tol=GazeEM().tol, heldout_check=True)

SESSIONS = {
    "fixation task, 67 s": (
        dict(seed=4, tracker_drift_px_s=0.0, **TASK),
        dict(latent="bin", learn_gain=False),
    ),
    "2 min, drift 0.05 px/bin": (
        dict(seed=1, **TWO_MINUTES, **OFFSET_SESSION, drift_px_per_bin=0.05),
        dict(latent="fixation"),
    ),
}


def _errors(est: GazeEM, session) -> tuple[float, float]:
    d = est.gaze_per_bin()["mean"] - true_px(session)
    d = d[np.isfinite(d).all(1)]
    return float(np.sqrt((d**2).mean())), float(np.sqrt(((d - d.mean(0)) ** 2).mean()))


def run(max_iter: int = 80) -> list[dict]:
    rows = []
    for name, (sim_kw, fit_kw) in SESSIONS.items():
        session = make_session("small", **sim_kw)
        pair = []
        for label, hold in (("held", True), ("free", False)):
            est, seconds = timed_fit_with(
                session, fixation, "HOLD_GAUGE", hold, max_iter, **TO_CONVERGENCE, **fit_kw
            )
            rms, about = _errors(est, session)
            pair.append(
                {
                    "session": name,
                    "latent": est.latent_,
                    "gauge": label,
                    "iterations": est.n_iter_,
                    "converged": bool(est.converged_),
                    "fit (s)": round(seconds, 1),
                    "log-likelihood": round(float(est.loglik_[-1]), 1),
                    "RMS error (px)": round(rms, 3),
                    "about the common offset (px)": round(about, 3),
                }
            )
        time_ratios(pair, "time / held")
        rows += pair
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows)


if __name__ == "__main__":
    print(markdown(run()))
