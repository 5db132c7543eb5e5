"""One EM loop for every discrete-latent model in gazeem.

A model supplies only its E-step (log-space responsibilities and the marginal
log-likelihood) and its M-step; :func:`run_em` owns iteration, convergence,
the likelihood history and the monotonicity check. The gaze engine and the
textbook mixtures (:mod:`gazeem.mixtures`) both run on it.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tqdm.auto import tqdm

from gazeem.em.squarem import extrapolate, supports_acceleration

log = logging.getLogger("gazeem.em")


class LikelihoodDecreaseWarning(UserWarning):
    """An exact-EM iteration lowered the objective by more than numerical slack."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the change in log-likelihood fell below ``tol``."""


@dataclass(frozen=True)
class EStep:
    """The result of one E-step.

    Attributes
    ----------
    posterior
        Model-specific responsibilities (log space), e.g. ``log_resp`` of shape
        ``(n_samples, n_components)``.
    log_likelihood
        Marginal log-likelihood ``log p(data | params)`` summed over observations, in nats.
    """

    posterior: Any
    log_likelihood: float


class EMModel(Protocol):
    """What :func:`run_em` needs from a model."""

    #: True when the E-step is exact and the M-step maximises, so the objective cannot fall.
    exact: bool
    #: Number of observations, used to put ``tol`` on a per-observation scale.
    n_observations: int

    def e_step(self) -> EStep: ...

    def m_step(self, estep: EStep) -> None: ...

    def log_penalty(self) -> float:
        """Log prior density of the parameters (0 for maximum likelihood)."""
        ...

    # Optional: ``projection_loss`` (nats, >= 0), what the last M-step's projection onto a
    # constraint cost in the expected complete-data objective. The marginal objective
    # can then fall by at most that much (L(θ) − L(θ_old) ≥ Q(θ) − Q(θ_old)), and run_em
    # warns only beyond it.


@dataclass(frozen=True)
class EMState:
    """Immutable record of one EM run.

    ``log_likelihood[i]`` and ``objective[i]`` are evaluated after ``i`` M-steps
    (index 0 is the initial parameters). ``objective = log_likelihood + log_penalty``
    is the quantity exact EM never lowers.
    """

    log_likelihood: tuple[float, ...]
    objective: tuple[float, ...]
    n_iter: int
    converged: bool
    warnings: tuple[str, ...]
    seconds_per_iter: tuple[float, ...]
    #: SQUAREM: extrapolations accepted, and the E-steps spent trying them
    extrapolations: tuple[int, int] = (0, 0)
    #: converged because ``settled`` said the answer had stopped moving (not on ``tol``)
    settled: bool = False

    @property
    def final_log_likelihood(self) -> float:
        return self.log_likelihood[-1]

    def then(self, more: EMState) -> EMState:
        """This run's trace followed by ``more``'s, EM resumed after a change of the model
        (the E-step between them counted as an iteration: the objective steps there)."""
        return replace(
            more,
            log_likelihood=self.log_likelihood + more.log_likelihood,
            objective=self.objective + more.objective,
            n_iter=self.n_iter + 1 + more.n_iter,
            warnings=self.warnings + more.warnings,
            seconds_per_iter=self.seconds_per_iter + more.seconds_per_iter,
            extrapolations=tuple(
                a + b for a, b in zip(self.extrapolations, more.extrapolations, strict=True)
            ),
        )


def run_em(
    model: EMModel,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    rel_slack: float = 1e-6,
    progress: bool = False,
    desc: str = "EM",
    callback: Callable[[int, EStep], None] | None = None,
    previous: float | None = None,
    accelerate: bool = False,
    settled: Callable[[], bool] | None = None,
) -> tuple[EStep, EMState]:
    """Iterate E- and M-steps until the objective stops changing.

    Parameters
    ----------
    model
        Supplies ``e_step``, ``m_step`` and ``log_penalty`` (see :class:`EMModel`).
    tol
        Stop when ``|Δ objective| / n_observations < tol`` (nats per observation).
    max_iter
        Most M-steps to take. ``max_iter=0`` only evaluates the initial parameters.
    rel_slack
        An exact-EM step that lowers the objective by more than
        ``rel_slack * |objective| + 1e-9 * n_observations`` is recorded as a warning
        (:class:`LikelihoodDecreaseWarning`); smaller changes are rounding.
    progress
        Show a tqdm bar per iteration with the current log-likelihood.
    callback
        Called as ``callback(iteration, estep)`` after each E-step.
    previous
        The objective before the initial parameters, when EM resumes (a warm start):
        the initial E-step is then checked for convergence against it, so a resumed
        fit can stop without an M-step.
    accelerate
        SQUAREM (:mod:`gazeem.em.squarem`) after every two EM steps, for exact models
        that expose their parameters; an accepted extrapolation is recorded as an
        iteration, and ``EMState.extrapolations`` counts the E-steps spent on tries.
    settled
        Asked after each EM step (after ``callback``): True when the model's answer has
        stopped moving by its own measure, which also ends EM (``EMState.settled``). For
        models whose objective keeps a wander of a few nats that ``tol`` cannot tell from
        progress (:class:`gazeem.gaze.posterior.GazeMoves`).

    Returns
    -------
    estep
        The E-step at the final parameters (its posterior is consistent with them).
    state
        The history, ``n_iter``, ``converged`` and any warnings.
    """
    if tol < 0 or not math.isfinite(tol):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}.")
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter!r}.")
    n_obs = max(int(model.n_observations), 1)

    t0 = time.perf_counter()
    estep = model.e_step()
    lls = [estep.log_likelihood]
    objs = [estep.log_likelihood + model.log_penalty()]
    secs = [time.perf_counter() - t0]
    notes: list[str] = []
    if callback is not None:
        callback(0, estep)
    _check_finite(objs[-1], 0)
    log.info("iteration 0: log-likelihood %.6g (%.3f s)", lls[-1], secs[-1])

    converged = previous is not None and abs(objs[0] - previous) / n_obs < tol
    bar = tqdm(total=max_iter, desc=desc, disable=not progress, leave=False, unit="iter")
    accel = accelerate and model.exact and supports_acceleration(model)
    thetas = [model.parameter_vector()] if accel else []
    extra = [0, 0]  # extrapolations accepted, E-steps spent on them
    n_iter = 0
    by_answer = False

    def record(estep: EStep, t0: float, em_step: bool = True) -> bool:
        """Append the point ``estep`` to the history; True when EM has converged (judged
        on EM steps only: an extrapolation near θ2 changes little without settling)."""
        nonlocal n_iter, by_answer
        n_iter += 1
        lls.append(estep.log_likelihood)
        objs.append(estep.log_likelihood + model.log_penalty())
        secs.append(time.perf_counter() - t0)
        _check_finite(objs[-1], n_iter)
        if callback is not None:
            callback(n_iter, estep)
        change = objs[-1] - objs[-2]
        log.info(
            "iteration %d: log-likelihood %.6g, change %.3g (%.3f s)",
            n_iter,
            lls[-1],
            change,
            secs[-1],
        )
        bar.update(1)
        bar.set_postfix(loglik=f"{lls[-1]:.6g}", change=f"{change:.3g}")
        slack = rel_slack * abs(objs[-2]) + 1e-9 * n_obs
        slack += float(getattr(model, "projection_loss", 0.0))
        if model.exact and change < -slack:
            msg = (
                f"iteration {n_iter}: the objective fell by {-change:.6g} nats "
                f"(from {objs[-2]:.10g} to {objs[-1]:.10g}), more than the slack {slack:.3g}"
            )
            notes.append(msg)
            warnings.warn(msg, LikelihoodDecreaseWarning, stacklevel=3)
        if not em_step:
            return False
        if abs(change) / n_obs < tol:
            return True
        by_answer = settled is not None and settled()
        return by_answer

    try:
        while not converged and n_iter < max_iter:
            t0 = time.perf_counter()
            model.m_step(estep)
            estep = model.e_step()
            converged = record(estep, t0)
            if not accel or converged or n_iter >= max_iter:
                continue
            thetas.append(model.parameter_vector())
            if len(thetas) == 3:
                t0 = time.perf_counter()
                new, spent, ok = extrapolate(
                    model, *thetas, estep, lambda e: e.log_likelihood + model.log_penalty()
                )
                extra[0] += ok
                extra[1] += spent
                if ok:
                    estep = new
                    record(estep, t0, em_step=False)
                thetas = [model.parameter_vector()]
    finally:
        bar.close()

    if not converged and max_iter > 0:
        unsettled = ", and the answer did not settle (gaze_tol in a gaze fit)" if settled else ""
        msg = (
            f"EM did not converge in max_iter={max_iter} iterations (last change "
            f"{objs[-1] - objs[-2]:.3g} nats, tol={tol:g} per observation){unsettled}; "
            "raise max_iter or tol."
        )
        notes.append(msg)
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    state = EMState(
        log_likelihood=tuple(lls),
        objective=tuple(objs),
        n_iter=n_iter,
        converged=converged,
        warnings=tuple(notes),
        seconds_per_iter=tuple(secs),
        extrapolations=(extra[0], extra[1]),
        settled=by_answer and converged,
    )
    return estep, state


def _check_finite(value: float, iteration: int) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(
            f"the EM objective became {value} at iteration {iteration}; the data may hold "
            "values the model cannot explain (e.g. spikes at zero predicted rate). Try "
            "dtype='float64' or a stronger penalty."
        )
