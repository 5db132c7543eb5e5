"""Central credible intervals of the gaze, from the posterior's own shape (issue 14).

The likelihood is flat within a grid cell (the patch is cut at the cell), so the posterior
of the continuous gaze is piecewise uniform: a cell's mass spread evenly over its pixel.
A posterior concentrated on one cell is a uniform of width 1 px, whose SD is 0.29 px
and whose ``mean ± 1 SD`` holds 58% of its mass, not 68%. Intervals read as ``mean ± z
SD`` therefore under-cover where the posterior is sharp. These are the posterior's own
quantiles instead: per axis, the marginal over cells, each cell's mass uniform over its
pixel, convolved where needed with a Gaussian (the eye's motion within a fixation that
the per-fixation latent adds from the tracker, :func:`gazeem.gaze.posterior.within_fixation_motion`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: the central intervals reported, as posterior mass
LEVELS = (0.68, 0.95)
_BISECTIONS = 40


def tail_probs(levels: tuple[float, ...] = LEVELS) -> torch.Tensor:
    """``(2L,)`` the lower then the upper tail probabilities of central intervals."""
    lv = torch.tensor(levels, dtype=torch.float64)
    return torch.cat([(1 - lv) / 2, (1 + lv) / 2])


def axis_marginals(q: torch.Tensor, side: int) -> torch.Tensor:
    """``(N, 2, side)``: the x and y marginals of ``q (N, K)`` over square windows whose cell
    ``k = iy · side + ix`` sits at ``first + (ix, iy)`` pixels."""
    q3 = q.reshape(q.shape[0], side, side)
    return torch.stack([q3.sum(1), q3.sum(2)], dim=1)


def cell_quantiles(
    w: torch.Tensor, first: torch.Tensor, probs: torch.Tensor, width: float = 1.0
) -> torch.Tensor:
    """Quantiles ``(M, P)`` px of piecewise-uniform densities: ``w (M, A)`` the mass of cell
    ``j``, spread evenly over ``first + (j ± ½) · width``; ``first (M,)`` px."""
    w = w.to(torch.float64)
    w = w / w.sum(1, keepdim=True).clamp_min(1e-300)
    cum = w.cumsum(1)
    p = probs.to(cum).expand(w.shape[0], -1).contiguous()
    j = torch.searchsorted(cum, p).clamp(max=w.shape[1] - 1)
    before = torch.where(j > 0, cum.gather(1, (j - 1).clamp_min(0)), torch.zeros_like(p))
    frac = ((p - before) / w.gather(1, j).clamp_min(1e-300)).clamp(0, 1)
    return first.to(torch.float64)[:, None] + (j + frac - 0.5) * width


def _uniform_normal_cdf(
    t: torch.Tensor, a: torch.Tensor, s: torch.Tensor, width: float = 1.0
) -> torch.Tensor:
    """CDF at ``t`` of U(a − width/2, a + width/2) + N(0, s²) (``s > 0``), broadcast."""

    def g(z):  # ∫ Φ: z Φ(z) + φ(z)
        return z * 0.5 * torch.erfc(-z / math.sqrt(2)) + torch.exp(-0.5 * z**2) / math.sqrt(
            2 * math.pi
        )

    h = width / 2
    return s / width * (g((t - a + h) / s) - g((t - a - h) / s))


def smoothed_cell_quantiles(
    w: torch.Tensor, first: torch.Tensor, var: torch.Tensor, probs: torch.Tensor, width: float = 1.0
) -> torch.Tensor:
    """:func:`cell_quantiles` of the densities convolved with ``N(0, var (M,))`` px²."""
    out = cell_quantiles(w, first, probs, width)
    smooth = var > 0
    if not bool(smooth.any()):
        return out
    w = w[smooth].to(torch.float64)
    w = w / w.sum(1, keepdim=True).clamp_min(1e-300)
    s = var[smooth].to(torch.float64).sqrt()[:, None, None]
    atoms = first[smooth].to(torch.float64)[:, None] + width * torch.arange(w.shape[1])
    atoms = atoms[:, None, :]
    lo = atoms[..., 0] - width / 2 - 8 * s[..., 0]
    hi = atoms[..., -1] + width / 2 + 8 * s[..., 0]
    lo, hi = lo.expand(-1, probs.numel()).clone(), hi.expand(-1, probs.numel()).clone()
    p = probs.to(torch.float64)[None, :]
    for _ in range(_BISECTIONS):  # a fixed number of halvings of every bracket at once
        mid = (lo + hi) / 2
        cdf = (w[:, None, :] * _uniform_normal_cdf(mid[..., None], atoms, s, width)).sum(-1)
        below = cdf < p
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    out[smooth] = (lo + hi) / 2
    return out


def window_intervals(
    q: torch.Tensor,
    pos: torch.Tensor,
    side: int,
    pinned: torch.Tensor,
    var: torch.Tensor | None = None,
    levels: tuple[float, ...] = LEVELS,
    width: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Central intervals of posteriors over square windows: ``(lower, upper)``, each
    ``(N, 2, L)`` px.

    ``q (N, K)`` posterior mass, ``pos (N, K, 2)`` cell positions px (cells ``width`` px
    apart), ``pinned (N,)`` rows whose position is known (calibration targets: a point),
    ``var (N,)`` px² of Gaussian spread to add per axis (``None``: none).
    """
    n, nl = q.shape[0], len(levels)
    if n == 0:
        return np.zeros((0, 2, nl)), np.zeros((0, 2, nl))
    probs = tail_probs(levels)
    q, pos = q.detach().cpu().to(torch.float64), pos.detach().cpu().to(torch.float64)
    marg = axis_marginals(q, side).reshape(n * 2, side)
    first = pos[:, 0, :].reshape(n * 2)
    v = torch.zeros(n) if var is None else torch.as_tensor(var, dtype=torch.float64)
    qs = smoothed_cell_quantiles(marg, first, v.repeat_interleave(2), probs, width)
    qs = qs.reshape(n, 2, -1)
    pinned = pinned.detach().cpu().bool()
    qs[pinned] = pos[pinned, 0, :, None].expand(-1, -1, 2 * nl)
    return qs[..., :nl].numpy(), qs[..., nl:].numpy()
