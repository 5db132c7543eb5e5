"""The fields' penalty strengths chosen from the data: ``smooth: cv``, ``l2: cv`` (issue 14).

The Laplacian penalty ``smooth · Σ (∇² rf)²`` and the ridge ``l2 · Σ rf²`` trade the
fields' noise for their shape. Their defaults (1000 and 10 nats) were set where a
raw-trace start needs them (docs/architecture.md, "Penalties"); once EM has found the
gaze, the spikes may support sharper fields. With ``cv`` EM first converges at
:data:`STARTS`; then, with EM's posterior held, the fields are refitted on two of
:data:`FOLDS` folds of fixations (fixation ``f`` to fold ``f mod 3``, warm-started at
EM's fields) for each candidate strength in :data:`FACTORS` × its start, and scored by
the expected log-likelihood of the third fold's spikes under that posterior. The
strength with the best held-out score over the three folds is kept. Where both are
``cv``, ``smooth`` is chosen first (at ``l2``'s start) and ``l2`` then at the chosen
``smooth`` (one pass of coordinate search). EM then goes on from there to convergence.
The fit records the candidates, their scores and the choices; its EM trace joins both
runs (``n_iter`` counts both and the E-step between them; the objective steps where the
penalty changed).

Only the per-fixation latent: the per-bin chain's posterior is per bin and its folds
would need the chain's own M-step (there the penalties stay at their starts, and the fit
says so). Cost: ``len(FACTORS) · FOLDS`` refits of the fields per penalty chosen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from gazeem.em.engine import EMState, EStep, run_em
from gazeem.em.estep import prune_support
from gazeem.gaze.crossfit import FOLDS, MIN_PER_FOLD

#: the strengths EM starts from under ``cv`` (the defaults of ``smooth`` and ``l2``)
STARTS = {"smooth": 1000.0, "l2": 10.0}
#: candidates, as multiples of the start: 1/27 to 3 of it (37 to 3,000 nats for
#: ``smooth``, 0.37 to 30 for ``l2``), a factor 3 apart
FACTORS = 3.0 ** np.arange(-3, 2)


@dataclass(frozen=True)
class PenaltyChoice:
    """``values (K,)`` candidate strengths (nats), ``heldout (K,)`` the held-out expected
    log-likelihood of each (nats, summed over the folds), and the ``chosen`` strength."""

    values: np.ndarray
    heldout: np.ndarray
    chosen: float


def expected_loglik(problem, cells, weights, keep) -> float:
    """``Σ w · log p(y | x, z)`` over the pairs ``keep`` of ``cells (F, K, 2)``, nats."""
    batches = problem.batches.pair_batches(cells, weights, keep, cache=False, pooled=True)
    return problem.pairs_loglik(batches)


def cross_validated_penalty(problem, post, name: str = "smooth") -> PenaltyChoice | None:
    """The strength of penalty ``name`` (``"smooth"`` or ``"l2"``) with the best held-out
    score (module docstring), set on ``problem.response``; ``None`` (nothing changed)
    with fewer than :data:`~gazeem.gaze.crossfit.MIN_PER_FOLD` fixations in a fold, or
    for a response model without that penalty."""
    n_fix = post.log_q.shape[0]
    if n_fix < FOLDS * MIN_PER_FOLD or not hasattr(problem.response, name):
        return None
    response = problem.response
    fitted, start = copy.deepcopy(response.state_dict()), getattr(response, name)
    weights = post.log_q.exp()
    keep = prune_support(post.log_q, problem.settings.mstep.prune_mass)
    fold = (torch.arange(n_fix) % FOLDS).to(keep.device)[:, None]
    values = STARTS[name] * FACTORS
    heldout = np.zeros(len(values))
    try:
        for i, value in enumerate(values):
            setattr(response, name, float(value))
            for k in range(FOLDS):
                response.load_state_dict(fitted)
                on = fold != k
                problem.fit_response(post.windows.cells, torch.where(on, weights, 0.0), keep & on)
                out = torch.where(on, 0.0, weights)
                heldout[i] += expected_loglik(problem, post.windows.cells, out, keep & ~on)
    finally:
        response.load_state_dict(fitted)
        setattr(response, name, start)
    chosen = float(values[int(np.argmax(heldout))])
    setattr(response, name, chosen)
    return PenaltyChoice(values, heldout, chosen)


def em_with_cv_penalties(
    problem,
    estep: EStep,
    state: EMState,
    em: dict,
    names: tuple[str, ...] = ("smooth",),
) -> tuple[EStep, EMState, dict[str, PenaltyChoice]]:
    """After EM converged (``estep``, ``state``): choose the strengths of ``names`` in
    turn, each at the ones chosen before it, then run EM on from there
    (:func:`~gazeem.em.engine.run_em` with ``em``); the two runs' traces joined, the
    E-step after the choice counted as an iteration (the objective steps there).
    Unchanged where no choice was made (``names`` empty, or too few fixations)."""
    choices = {}
    for name in names:
        choice = cross_validated_penalty(problem, estep.posterior, name)
        if choice is not None:
            choices[name] = choice
    if not choices:
        return estep, state, choices
    estep, more = run_em(problem, **em)
    return estep, state.then(more), choices
