"""A posterior-predictive check of spike counts on held-out bins (issue 14).

Where the truth is not known (every real recording), a model is checked by whether the
spikes it did not see look like the spikes it predicts. :mod:`gazeem.gaze.heldout`
scores each held-out bin under fields fitted on the other fold, at a gaze inferred from
the other bins of its fixation (and, for the raw trace, at the raw reading). Its
predicted counts ``λ`` (per bin and unit) and the observed counts ``y`` are summarised
here, streaming, in two ways:

- **rate calibration:** the (bin, unit) pairs grouped by predicted count on a log scale;
  per group the mean predicted and the mean observed count. A calibrated model lies on
  the diagonal; a model whose gaze is wrong predicts too high where it predicts high and
  too low where it predicts low (a slope below 1).
- **count distribution:** the fraction of pairs with 0, 1, …, ``MAX_COUNT − 1`` and at least
  ``MAX_COUNT`` spikes, observed and predicted (the Poisson probabilities averaged over
  pairs). Over-dispersion (more zeros and more large counts than predicted) shows here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

#: edges of the predicted-count groups (spikes per bin); rates outside fall in the end groups
RATE_EDGES = np.geomspace(1e-3, 10.0, 13)
#: counts 0 … MAX_COUNT − 1 each, and MAX_COUNT or more together
MAX_COUNT = 5


@dataclasses.dataclass
class PredictiveCheck:
    """Sums over (bin, unit) pairs, per predicted-count group and per count."""

    pairs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(len(RATE_EDGES) - 1))
    predicted: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(len(RATE_EDGES) - 1))
    observed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(len(RATE_EDGES) - 1))
    count_observed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(MAX_COUNT + 1))
    count_predicted: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(MAX_COUNT + 1))

    def add(self, rate: torch.Tensor, counts: torch.Tensor) -> None:
        """Add pairs: predicted counts ``rate (M, N)`` and observed ``counts (M, N)``."""
        lam = rate.detach().to(torch.float64).cpu().reshape(-1)
        y = counts.detach().to(torch.float64).cpu().reshape(-1)
        g = torch.bucketize(lam, torch.as_tensor(RATE_EDGES[1:-1])).numpy()
        n = len(RATE_EDGES) - 1
        self.pairs += np.bincount(g, minlength=n)
        self.predicted += np.bincount(g, weights=lam.numpy(), minlength=n)
        self.observed += np.bincount(g, weights=y.numpy(), minlength=n)
        k = torch.arange(MAX_COUNT, dtype=torch.float64)
        logp = k * torch.log(lam.clamp_min(1e-300))[:, None] - lam[:, None] - torch.lgamma(k + 1)
        p = torch.exp(logp).sum(0)
        self.count_predicted[:MAX_COUNT] += p.numpy()
        self.count_predicted[MAX_COUNT] += float(lam.numel() - p.sum())
        self.count_observed += np.bincount(
            y.clamp(max=MAX_COUNT).to(torch.int64).numpy(), minlength=MAX_COUNT + 1
        )

    def mean_predicted(self) -> np.ndarray:
        """``(G,)`` mean predicted count per group (NaN where a group is empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pairs > 0, self.predicted / self.pairs, np.nan)

    def mean_observed(self) -> np.ndarray:
        """``(G,)`` mean observed count per group (NaN where a group is empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pairs > 0, self.observed / self.pairs, np.nan)

    def count_fractions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(observed, predicted)``, each ``(MAX_COUNT + 1,)``: fractions of pairs by count."""
        total = max(float(self.pairs.sum()), 1.0)
        return self.count_observed / total, self.count_predicted / total

    def count_distance(self) -> float:
        """Total-variation distance between the observed and predicted count fractions:
        0 when the counts look as predicted, more where the rates are wrong."""
        obs, pred = self.count_fractions()
        return float(0.5 * np.abs(obs - pred).sum())

    def slope(self) -> float:
        """Pair-weighted least-squares slope of observed on predicted group means through
        the origin: 1 for a calibrated model, below 1 where predictions are too extreme."""
        ok = self.pairs > 0
        x, y, w = self.mean_predicted()[ok], self.mean_observed()[ok], self.pairs[ok]
        den = float((w * x * x).sum())
        return float((w * x * y).sum() / den) if den > 0 else float("nan")
