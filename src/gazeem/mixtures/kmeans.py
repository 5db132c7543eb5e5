"""k-means++ seeding and Lloyd iterations, in torch, for initialising mixtures."""

from __future__ import annotations

import numpy as np
import torch


def _sq_dist(X: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` squared Euclidean distances, clamped at 0."""
    return ((X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None, :]).clamp_min(0)


def kmeans_plusplus(X: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """``k`` centres chosen by D² sampling (Arthur & Vassilvitskii 2007); ``(k, d)``."""
    n = X.shape[0]
    idx = [int(rng.integers(n))]
    d2 = _sq_dist(X, X[idx]).squeeze(1)
    for _ in range(1, k):
        p = d2.double().cpu().numpy()
        total = p.sum()
        nxt = int(rng.choice(n, p=p / total)) if total > 0 else int(rng.integers(n))
        idx.append(nxt)
        d2 = torch.minimum(d2, _sq_dist(X, X[nxt : nxt + 1]).squeeze(1))
    return X[idx].clone()


def kmeans(
    X: torch.Tensor, k: int, rng: np.random.Generator, max_iter: int = 100, chunk: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm from k-means++ seeds; returns ``(centres (k, d), labels (N,))``."""
    centers = kmeans_plusplus(X, k, rng)
    labels = torch.full((X.shape[0],), -1, dtype=torch.int64, device=X.device)
    for _ in range(max_iter):
        new = torch.cat(
            [_sq_dist(X[s : s + chunk], centers).argmin(1) for s in range(0, X.shape[0], chunk)]
        )
        if torch.equal(new, labels):
            break
        labels = new
        counts = torch.bincount(labels, minlength=k).to(X.dtype)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        nonempty = counts > 0
        centers[nonempty] = sums[nonempty] / counts[nonempty, None]
    return centers, labels
