"""What the calibrated sub-pixel posterior costs in fit time (issue 14).

The fixation task of ``tests/gaze/test_fixation_task.py`` (67 s, per-fixation latent,
constant tracker error; seeds 4 and 5) is fitted to convergence twice in one run: with
the sub-pixel step scoring every fixation under cross-fitted fields and adding the
fields' noise (:data:`gazeem.gaze.subpixel.CROSS_FIT`, the default) and with EM's own
fields (before). Both fits are timed whole, as a user runs them; the accuracy and the
coverage are against the simulated truth.
"""

from __future__ import annotations

from tests.conftest import make_session
from tests.gaze.realistic import interval_coverage, rms, sd_over_error, through_nwb, true_px
from tests.gaze.test_fixation_task import TASK

from benchmarks.common import md_table, time_ratios, timed_fit_with
from benchmarks.gauge import TO_CONVERGENCE
from gazeem.gaze import subpixel


def run(seeds=(4, 5)) -> list[dict]:
    import tempfile
    from pathlib import Path

    rows = []
    for seed in seeds:
        sim = make_session("small", seed=seed, tracker_drift_px_s=0.0, **TASK)
        session = through_nwb(sim, Path(tempfile.mkdtemp()))
        truth = true_px(session)
        pair = []
        for label, cross in (("EM's fields (before)", False), ("cross-fitted", True)):
            est, seconds = timed_fit_with(
                session, subpixel, "CROSS_FIT", cross, 60, latent="fixation",
                learn_gain=False, **TO_CONVERGENCE,
            )  # fmt: skip
            gaze = est.gaze_per_bin()
            pair.append(
                {
                    "seed": seed,
                    "scoring": label,
                    "iterations": est.n_iter_,
                    "fit (s)": round(seconds, 1),
                    "RMS error (px)": round(rms(gaze["mean"], truth), 3),
                    "95% coverage": round(interval_coverage(gaze, truth, 0.95), 3),
                    "68% coverage": round(interval_coverage(gaze, truth, 0.68), 3),
                    "median SD / RMS": round(sd_over_error(gaze["mean"], gaze["sd"], truth), 2),
                }
            )
        time_ratios(pair, "time / before")
        rows += pair
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows)


if __name__ == "__main__":
    print(markdown(run()))
