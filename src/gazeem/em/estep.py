"""Log-space helpers for E-steps over a discrete latent.

These kernels do not check their inputs; the public entry points do.
"""

from __future__ import annotations

import torch


def normalize_log(log_joint: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise log joint probabilities along ``dim``.

    Parameters
    ----------
    log_joint
        ``log p(data_i, z)`` for each observation ``i`` and latent value ``z``,
        e.g. shape ``(n_fixations, n_cells)``; ``-inf`` marks cells outside the support.

    Returns
    -------
    log_resp
        ``log q(z) = log p(z | data_i)``, same shape as ``log_joint``.
    log_marginal
        ``log p(data_i)``, shape of ``log_joint`` without ``dim``.
    """
    log_marginal = torch.logsumexp(log_joint, dim=dim, keepdim=True)
    log_resp = log_joint - log_marginal
    # rows with no support stay -inf everywhere rather than NaN (checked on the small
    # marginal, so rows that all have support cost no pass over the large array)
    empty = ~torch.isfinite(log_marginal)
    if bool(empty.any()):
        log_resp = log_resp.masked_fill(empty, -torch.inf)
    return log_resp, log_marginal.squeeze(dim)


def prune_support(log_resp: torch.Tensor, mass_tol: float) -> torch.Tensor:
    """Cells that together hold all but ``mass_tol`` of each row's posterior mass.

    Parameters
    ----------
    log_resp
        ``(n_rows, n_cells)`` normalised log posterior.
    mass_tol
        Posterior mass that may be dropped per row (e.g. ``1e-6``).

    Returns
    -------
    keep
        ``(n_rows, n_cells)`` bool; always at least the MAP cell of each row.
    """
    q = log_resp.exp()
    q_sorted, order = torch.sort(q, dim=-1, descending=True)
    mass_before = torch.cumsum(q_sorted, dim=-1) - q_sorted
    keep_sorted = mass_before < 1.0 - mass_tol
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(-1, order, keep_sorted)
    return keep & (q > 0)


def sample_support(
    log_resp: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``num_samples`` cells per row from ``q`` and count them (Monte-Carlo EM).

    Returns
    -------
    counts
        ``(n_rows, n_cells)`` int64: how often each cell was drawn; the cells with
        ``counts > 0`` are the next E-step's support.
    """
    q = log_resp.exp().to(torch.float64)
    q = torch.nan_to_num(q, nan=0.0)
    draws = torch.multinomial(q, num_samples, replacement=True, generator=generator)
    counts = torch.zeros(q.shape, dtype=torch.int64, device=q.device)
    counts.scatter_add_(-1, draws, torch.ones_like(draws))
    return counts
