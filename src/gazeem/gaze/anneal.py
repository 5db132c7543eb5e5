"""Deterministic annealing: a tempered start that leads EM out of the raw trace's basin.

Where a fixation sees one static patch per cell (a photograph held for seconds), EM
started from fields fitted on the raw trace settles in a per-fixation *rate state*: each
fixation's cell is whichever patch best matches its mean counts under those blurred
fields, and the fields then fit those cells (docs/architecture.md, "Known limits").
Annealing runs the first M-steps on a tempered posterior,
``q_T(z) ∝ p(y | z)^(1/T) p(ẑ | z) p(z)``, with ``T`` falling geometrically from
:data:`START` by :data:`RATE` per step down to 1. At high ``T`` the posterior is the
tracker's, so the fields are fitted on the tracker's spread of positions; as ``T`` falls
the spikes take over a little at a time, and the fields sharpen with them.

The tempered steps are not EM steps of the model's likelihood (nothing is monotone in
them), so they run before :func:`gazeem.em.engine.run_em`, which then starts at
``T = 1`` with its usual convergence rule and checks; ``max_iter`` counts those
iterations only, and ``max_iter = 0`` (evaluate the starting parameters) anneals nothing.

``anneal: auto`` anneals where the session holds frames within fixations
(:attr:`gazeem.gaze.batches.Batches.runs`), and not on noise, where it changed nothing
but the time (measured in docs/architecture.md, "Annealing").
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("gazeem")

#: starting temperature and its factor per step: 16 tempered M-steps, 30 down to 1.06
START = 30.0
RATE = 0.8


def temperatures(start: float = START, rate: float = RATE) -> list[float]:
    """The schedule: ``start · rate^k`` for every ``k`` with a value above 1."""
    out, t = [], float(start)
    while t > 1.0:
        out.append(t)
        t *= rate
    return out


def choose_anneal(setting: str | bool, problem) -> tuple[bool, str]:
    """Whether to anneal, and why (recorded in the fit as ``anneal_reason``)."""
    if setting != "auto":
        return bool(setting), f"set: anneal={str(bool(setting)).lower()}"
    base = getattr(problem, "base", problem)
    if base.batches.runs is not None:
        return True, (
            "auto: the stimulus is held within fixations (a static patch per cell), "
            "where EM from the raw trace settles in a per-fixation rate state"
        )
    return False, "auto: the stimulus changes within fixations (no held frames)"


def anneal(problem, schedule: list[float]) -> int:
    """Run one tempered E- and M-step per temperature of ``schedule``; returns the steps.

    ``problem`` is a :class:`~gazeem.gaze.fixation.FixationProblem` or a
    :class:`~gazeem.gaze.drift.DriftProblem`; its temperature is 1 again on return.
    """
    base = getattr(problem, "base", problem)
    try:
        for k, t in enumerate(schedule, 1):
            t0 = time.perf_counter()
            base.temperature = t
            problem.m_step(problem.e_step())
            log.info("anneal step %d: temperature %.3g (%.3f s)", k, t, time.perf_counter() - t0)
    finally:
        base.temperature = 1.0
    return len(schedule)
