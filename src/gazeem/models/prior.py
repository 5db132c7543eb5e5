"""Priors ``p(z)`` over the cells of the gaze grid.

Cells are addressed by their flat index ``row * grid_width + col`` in grid coordinates.
"""

from __future__ import annotations

import math

import torch


class GridPrior:
    """Base class: a fixed uniform prior over ``n_cells`` cells."""

    learnable = False

    def __init__(self, n_cells: int) -> None:
        self.n_cells = int(n_cells)

    def log_prob(self, cells: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` at flat cell indices ``cells`` (any shape); same shape, nats."""
        return torch.full(cells.shape, -math.log(self.n_cells), dtype=torch.float64)

    def m_step(self, cells: torch.Tensor, weights: torch.Tensor) -> None:
        """Update from cell indices and their posterior weights (or sample counts)."""

    def log_penalty(self) -> float:
        """Log prior density of the prior's own parameters (0 when fixed)."""
        return 0.0


class UniformPrior(GridPrior):
    """Every cell equally likely."""


class CellWeightsPrior(GridPrior):
    """Fixed, user-given non-negative weights per cell, normalised over the grid.

    Parameters
    ----------
    weights
        ``(n_cells,)`` or ``(grid_rows, grid_cols)``; cells with weight 0 are excluded.
    """

    def __init__(self, weights: torch.Tensor) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("prior weights must be finite, >= 0 and not all zero.")
        super().__init__(w.numel())
        self.log_weights = torch.log(w / w.sum())

    def log_prob(self, cells: torch.Tensor) -> torch.Tensor:
        return self.log_weights.to(cells.device)[cells]


class CountsPrior(CellWeightsPrior):
    """Learned cell frequencies: the ``z_sample`` counts of the reference notes.

    The E-step multiplies the posterior by how often each cell was visited. The
    M-step sets ``π_z ∝ pseudocount + Σ_f q_f(z)`` (exact EM) or
    ``∝ pseudocount + (number of Monte-Carlo draws of z)`` (Monte-Carlo EM). That is
    the MAP estimate under a ``Dirichlet(pseudocount + 1)`` prior, whose log density
    :meth:`log_penalty` returns so that exact EM stays monotone.
    """

    learnable = True

    def __init__(self, n_cells: int, pseudocount: float = 1.0) -> None:
        if pseudocount <= 0:
            raise ValueError(f"prior pseudocount must be > 0, got {pseudocount}.")
        super().__init__(torch.ones(int(n_cells), dtype=torch.float64))
        self.pseudocount = float(pseudocount)
        self.counts = torch.zeros(self.n_cells, dtype=torch.float64)

    def m_step(self, cells: torch.Tensor, weights: torch.Tensor) -> None:
        counts = torch.zeros(self.n_cells, dtype=torch.float64)
        counts.index_add_(0, cells.reshape(-1).cpu(), weights.reshape(-1).to(torch.float64).cpu())
        self.counts = counts
        w = counts + self.pseudocount
        self.log_weights = torch.log(w / w.sum())

    def log_penalty(self) -> float:
        return self.pseudocount * float(self.log_weights.sum())
