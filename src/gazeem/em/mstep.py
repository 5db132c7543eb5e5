"""Gradient M-steps: maximise a weighted log-likelihood over a module's parameters.

The objective is ``Σ_i w_i · log p(y_i | x_i, z_i; θ) + log_penalty(θ)``, streamed
over batches so that memory stays bounded. L-BFGS (with a strong-Wolfe line
search, warm-started from the current parameters) solves convex models such as
:class:`~gazeem.models.response.PoissonLN` to convergence; Adam takes a fixed
number of steps for user models that are not convex.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, z, weight


@dataclass(frozen=True)
class MStepInfo:
    """Outcome of one gradient M-step."""

    method: str
    n_evals: int
    objective: float  # per unit weight, sign as maximised; up to a constant with an analytic loss


def maximize_weighted(
    module: torch.nn.Module,
    batches: Callable[[], Iterable[Batch]],
    *,
    method: str = "lbfgs",
    max_iter: int = 200,
    tol_grad: float = 1e-6,
    tol_change: float = 1e-10,
    adam_steps: int = 500,
    adam_lr: float = 0.01,
) -> MStepInfo:
    """Maximise the weighted log-likelihood of ``module`` in place.

    Parameters
    ----------
    module
        Has ``log_likelihood(x, y, z) -> (M,)`` and ``log_penalty() -> scalar``.
    batches
        Called once per objective evaluation; yields ``(x, y, z, w)`` with
        ``w (M,)`` the posterior weight of each pair. Or an objective that computes
        the loss itself: ``total_weight`` and ``accumulate(module, scale) -> loss``,
        which adds the gradient of ``-scale · Σ w log p`` to ``.grad`` (e.g.
        :class:`gazeem.gaze.window_mstep.WindowObjective`).
    method
        ``"lbfgs"`` or ``"adam"``.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    whole = getattr(batches, "accumulate", None)
    total_w = batches.total_weight if whole else sum(float(b[3].sum()) for b in batches())
    if total_w <= 0:
        raise ValueError("the M-step got no posterior weight: every fixation is empty.")
    scale = 1.0 / total_w
    n_evals = 0
    # a module may supply its loss (up to a constant) with an analytic gradient
    fast = getattr(module, "accumulate_weighted_loss", None)

    def evaluate(grad: bool = True) -> torch.Tensor:
        """Negative objective per unit weight; accumulates gradients when ``grad``."""
        nonlocal n_evals
        n_evals += 1
        for p in params:
            p.grad = None
        loss_total = torch.zeros((), dtype=torch.float64)
        with torch.set_grad_enabled(grad):
            if whole is not None:
                loss_total += whole(module, scale)
            for x, y, z, w in () if whole is not None else batches():
                if fast is not None:
                    loss_total += fast(x, y, w, scale)
                    continue
                loss = -(w * module.log_likelihood(x, y, z)).sum() * scale
                if grad:
                    loss.backward()
                loss_total += loss.detach().to(torch.float64).cpu()
            pen = -module.log_penalty() * scale
            if grad and pen.requires_grad:
                pen.backward()
        loss_total += float(pen.detach())
        return loss_total.to(params[0].dtype)

    closure = evaluate

    if method == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=max_iter,
            max_eval=int(max_iter * 1.5),
            tolerance_grad=tol_grad,
            tolerance_change=tol_change,
            history_size=20,
            line_search_fn="strong_wolfe",
        )
        opt.step(closure)
    elif method == "adam":
        opt = torch.optim.Adam(params, lr=adam_lr)
        for _ in range(adam_steps):
            closure()
            opt.step()
    else:
        raise ValueError(f"mstep must be 'lbfgs' or 'adam', got {method!r}.")
    final = float(evaluate(grad=False))
    return MStepInfo(method=method, n_evals=n_evals, objective=-final)
