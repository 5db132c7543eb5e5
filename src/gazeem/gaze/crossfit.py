"""Cross-fitted fields: score each fixation with fields that never saw its spikes (issue 14).

The fields that EM fits are fitted on the same spikes that the E-step then scores. Their
noise is fitted to those spikes, so each fixation's likelihood peaks a little too sharply
where its own spikes put it, and the posterior is too narrow (on the fixation task the
sub-pixel 95% interval covered 77%). Cross-fitting removes that: the fixations are dealt
into :data:`FOLDS` folds (fixation ``f`` to fold ``f mod FOLDS``, so every fold spans the
session), and a fixation is scored under fields refitted, from EM's posterior, on the
other folds only.

That leaves the fields' own noise, which every fixation scored under the same fields
shares, and which the likelihood takes for exact. Its size is measured, not modelled:
fields fitted on one other fold each give two independent estimates of a fixation's
position, and half the mean squared difference of the two is the variance that the noise
of one fold's fields adds to a position. The noise of a fit falls as ``1 / data``, so the
fields scored (``FOLDS − 1`` folds) add ``1 / (FOLDS − 1)`` of it; that variance, pooled
over a group of fixations (:meth:`CrossFit.field_var`), is added to each of their
posteriors. The groups matter: the same noise in the fields moves a fixation with weak
evidence (a broad likelihood) much more than one with strong evidence.

Cost: ``2 · FOLDS`` refits of the fields (warm-started at EM's) and as many scorings;
``FOLDS`` of each where only the fields' noise is asked for.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gazeem.em.estep import prune_support

#: folds of the cross-fitting (module docstring); the scored fields see 2/3 of the data
FOLDS = 3
#: cross-fit only with at least this many fixations in every fold
MIN_PER_FOLD = 3


#: pool the fields' noise over a group only where at least this many fixations measured
#: it; fewer: over every fixation that did
MIN_PAIRS = 10


@dataclass(frozen=True)
class CrossFit:
    """``scores (F, ...)``: row ``f`` computed under fields fitted without fixation ``f``'s
    fold (``None`` where no scores were asked for); ``pair_var (F,)``: half the squared
    difference, per axis, of each fixation's two one-fold positions (px², NaN where a
    position is not defined)."""

    scores: torch.Tensor | None
    pair_var: torch.Tensor

    def field_var(self, group: torch.Tensor | None = None) -> float:
        """px² per axis that the scored fields' noise adds to a position, pooled over the
        fixations of ``group (F,)`` bool (all by default; all where fewer than
        :data:`MIN_PAIRS` of the group measured it)."""
        ok = ~self.pair_var.isnan()
        if group is not None and int((ok & group).sum()) >= MIN_PAIRS:
            ok = ok & group
        one_fold = float(self.pair_var[ok].mean()) if ok.any() else 0.0
        return one_fold / (FOLDS - 1)


def cross_fit(
    problem,
    post,
    position: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    score: Callable[[], torch.Tensor] | None = None,
) -> CrossFit | None:
    """Cross-fitted ``score()`` of every fixation and the fields' noise (module docstring).

    Parameters
    ----------
    problem
        The fitted :class:`~gazeem.gaze.fixation.FixationProblem`; its fields are refitted
        in place and restored before returning.
    post
        EM's :class:`~gazeem.gaze.fixation.FixationPosterior`: the weights of the refits.
    position
        ``() -> (mean (F, 2) px, defined (F,) bool)``: each fixation's position under the
        current fields, and which fixations have one.
    score
        ``() -> (F, ...)`` float64 scores of every fixation under the current fields;
        ``None``: only the fields' noise is measured (``scores`` is ``None``, and the
        ``FOLDS`` refits on all folds but one are skipped).

    Returns ``None`` with fewer than :data:`MIN_PER_FOLD` fixations in a fold.
    """
    n_fix = post.log_q.shape[0]
    if n_fix < FOLDS * MIN_PER_FOLD:
        return None
    fold = torch.arange(n_fix) % FOLDS
    response = problem.response
    fitted = copy.deepcopy(response.state_dict())
    weights = post.log_q.exp()
    keep = prune_support(post.log_q, problem.settings.mstep.prune_mass)

    def on(folds: torch.Tensor, read: Callable):
        """``read()`` under fields refitted on the fixations of ``folds`` only."""
        response.load_state_dict(fitted)
        mask = torch.isin(fold, folds).to(keep.device)[:, None]
        problem.fit_response(post.windows.cells, torch.where(mask, weights, 0.0), keep & mask)
        return read()

    every = torch.arange(FOLDS)
    try:
        scores = None
        for k in range(FOLDS if score is not None else 0):
            s = on(every[every != k], score)
            scores = torch.empty_like(s) if scores is None else scores
            scores[fold == k] = s[fold == k]
        one_fold = [on(every[every == k], position) for k in range(FOLDS)]
    finally:
        response.load_state_dict(fitted)
    pair_var = torch.full((n_fix,), torch.nan, dtype=torch.float64)
    for k in range(FOLDS):
        a, b = [one_fold[j] for j in range(FOLDS) if j != k][:2]
        both = (fold == k) & a[1] & b[1]
        diff = (a[0][both] - b[0][both]).to(torch.float64)
        pair_var[both] = (diff**2).sum(1) / 4  # half the squared difference, per axis
    return CrossFit(scores, pair_var)
