"""The fields' smoothness penalty chosen from the data: ``smooth: cv`` (issue 14).

The Laplacian penalty ``smooth · Σ (∇² rf)²`` trades the fields' noise for their shape.
Its default (1000 nats) was set where a raw-trace start needs it (docs/architecture.md,
"Penalties"); once EM has found the gaze, the spikes may support sharper fields. With
``smooth: cv`` EM first converges at :data:`START`; then, with EM's posterior held, the
fields are refitted on two of :data:`FOLDS` folds of fixations (fixation ``f`` to fold
``f mod 3``, warm-started at EM's fields) for each candidate strength in
:data:`FACTORS` × :data:`START`, and scored by the expected log-likelihood of the
third fold's spikes under that posterior. The strength with the best held-out score
over the three folds is kept and EM goes on from there to convergence. The fit records
the candidates, their scores and the choice; its EM trace joins both runs (``n_iter``
counts both and the E-step between them; the objective steps where the penalty changed).

Only the per-fixation latent: the per-bin chain's posterior is per bin and its folds
would need the chain's own M-step (there the penalty stays at :data:`START`, and the fit
says so). Cost: ``len(FACTORS) · FOLDS`` refits of the fields.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from gazeem.em.engine import EMState, EStep
from gazeem.em.estep import prune_support
from gazeem.gaze.crossfit import FOLDS, MIN_PER_FOLD

#: the strength EM starts from under ``smooth: cv`` (the default of ``smooth``)
START = 1000.0
#: candidates, as multiples of :data:`START`: 37 to 3,000 nats, a factor 3 apart
FACTORS = 3.0 ** np.arange(-3, 2)


@dataclass(frozen=True)
class SmoothChoice:
    """``values (K,)`` candidate strengths (nats), ``heldout (K,)`` the held-out expected
    log-likelihood of each (nats, summed over the folds), and the ``chosen`` strength."""

    values: np.ndarray
    heldout: np.ndarray
    chosen: float


def expected_loglik(problem, cells, weights, keep) -> float:
    """``Σ w · log p(y | x, z)`` over the pairs ``keep`` of ``cells (F, K, 2)``, nats."""
    batches = problem.batches.pair_batches(cells, weights, keep, cache=False, pooled=True)
    return problem.pairs_loglik(batches)


def cross_validated_smooth(problem, post) -> SmoothChoice | None:
    """The strength with the best held-out score (module docstring), set on
    ``problem.response``; ``None`` (nothing changed) with fewer than
    :data:`~gazeem.gaze.crossfit.MIN_PER_FOLD` fixations in a fold, or for a response
    model without a ``smooth`` penalty."""
    n_fix = post.log_q.shape[0]
    if n_fix < FOLDS * MIN_PER_FOLD or not hasattr(problem.response, "smooth"):
        return None
    response = problem.response
    fitted, start = copy.deepcopy(response.state_dict()), response.smooth
    weights = post.log_q.exp()
    keep = prune_support(post.log_q, problem.settings.mstep.prune_mass)
    fold = (torch.arange(n_fix) % FOLDS).to(keep.device)[:, None]
    values = START * FACTORS
    heldout = np.zeros(len(values))
    try:
        for i, value in enumerate(values):
            response.smooth = float(value)
            for k in range(FOLDS):
                response.load_state_dict(fitted)
                on = fold != k
                problem.fit_response(post.windows.cells, torch.where(on, weights, 0.0), keep & on)
                out = torch.where(on, 0.0, weights)
                heldout[i] += expected_loglik(problem, post.windows.cells, out, keep & ~on)
    finally:
        response.load_state_dict(fitted)
        response.smooth = start
    response.smooth = chosen = float(values[int(np.argmax(heldout))])
    return SmoothChoice(values, heldout, chosen)


def em_with_cv_smooth(
    problem, estep: EStep, state: EMState, run: Callable[[], tuple[EStep, EMState]]
) -> tuple[EStep, EMState, SmoothChoice | None]:
    """After EM converged (``estep``, ``state``): choose the strength, then ``run()`` EM on
    from there; the two runs' traces joined, the E-step after the choice counted as an
    iteration (the objective steps there). Unchanged where no choice was made."""
    choice = cross_validated_smooth(problem, estep.posterior)
    if choice is None:
        return estep, state, None
    estep, more = run()
    joined = replace(
        more,
        log_likelihood=state.log_likelihood + more.log_likelihood,
        objective=state.objective + more.objective,
        n_iter=state.n_iter + 1 + more.n_iter,
        warnings=state.warnings + more.warnings,
        seconds_per_iter=state.seconds_per_iter + more.seconds_per_iter,
        extrapolations=tuple(
            a + b for a, b in zip(state.extrapolations, more.extrapolations, strict=True)
        ),
    )
    return estep, joined, choice
