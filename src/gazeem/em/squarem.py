"""SQUAREM: squared extrapolation of the EM parameter sequence (Varadhan & Roland 2008).

From parameters ``θ0`` two EM steps give ``θ1`` and ``θ2``; with ``r = θ1 − θ0`` and
``v = θ2 − 2θ1 + θ0``, the scheme S3 steps to ``θ' = θ0 − 2αr + α²v`` with
``α = −‖r‖ / ‖v‖`` (at most −1: ``α = −1`` is ``θ2`` itself). Where EM creeps along a
ridge, ``θ'`` jumps several EM steps at once.

The safeguard keeps EM monotone: ``θ'`` is accepted only when its objective is at least
``θ2``'s; otherwise the step length is halved towards −1 (``α ← (α − 1) / 2``) and,
after :data:`MAX_BACKTRACK` tries, ``θ2`` is kept. Each try costs one E-step, which
:func:`gazeem.em.engine.run_em` counts (``EMState.extrapolations``).

A model opts in with ``parameter_vector() -> torch.Tensor`` (float64, unconstrained: a
standard deviation as its log) and ``set_parameter_vector(v)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gazeem.em.engine import EStep

#: halvings of the step length before θ2 is kept
MAX_BACKTRACK = 3


def supports_acceleration(model) -> bool:
    return hasattr(model, "parameter_vector") and hasattr(model, "set_parameter_vector")


def extrapolate(
    model,
    theta0: torch.Tensor,
    theta1: torch.Tensor,
    theta2: torch.Tensor,
    estep2: EStep,
    objective: Callable[[EStep], float],
) -> tuple[EStep, int, bool]:
    """Try the S3 step from ``θ0, θ1, θ2`` (the model is at ``θ2``, with ``estep2``).

    Returns the E-step at the parameters the model is left at, the E-steps spent, and
    whether an extrapolated point was accepted.
    """
    r = theta1 - theta0
    v = theta2 - theta1 - r
    nv = float(v.norm())
    if nv == 0.0:
        return estep2, 0, False
    alpha = min(-1.0, -float(r.norm()) / nv)
    target = objective(estep2)
    spent = 0
    for _ in range(MAX_BACKTRACK + 1):
        if alpha > -1.0 + 1e-9:
            break
        model.set_parameter_vector(theta0 - 2 * alpha * r + alpha**2 * v)
        try:
            estep = model.e_step()
        except (FloatingPointError, RuntimeError, ValueError):
            estep = None  # an extrapolated point the model cannot evaluate: step back
        spent += 1
        if estep is not None and objective(estep) >= target:
            return estep, spent, True
        alpha = (alpha - 1.0) / 2.0
    model.set_parameter_vector(theta2)
    return estep2, spent, False
