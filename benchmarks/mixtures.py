"""gazeem's GaussianMixture against scikit-learn: same data, same start, same number of steps."""

from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks.common import md_table


def run(
    n: int = 1_000_000,
    k: int = 16,
    dims=(2, 32),
    n_iter: int = 5,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict]:
    """scikit-learn (CPU) against gazeem on ``device``: same data, start and steps.

    Issue 16's sizes: N = 10⁶, K = 16, d = 2 and 32, full covariances. Both take the
    same iterations from the same start, so they must end at the same log-likelihood
    (reported, with the parameters' largest relative difference).
    """
    import torch
    from sklearn.mixture import GaussianMixture as SkGMM

    from gazeem.mixtures import GaussianMixture

    rows = []
    rng = np.random.default_rng(seed)
    for d in dims:
        centres = rng.normal(0, 4, size=(k, d))
        X = centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))
        init = dict(
            weights_init=np.full(k, 1 / k),
            means_init=X[rng.choice(n, k, replace=False)],
            precisions_init=np.repeat(np.eye(d)[None], k, axis=0),
        )
        kw = dict(covariance_type="full", tol=0, max_iter=n_iter, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            sk = SkGMM(k, **kw).fit(X)
            t_sk = time.perf_counter() - t
            if device != "cpu":  # first CUDA call: context and kernels
                GaussianMixture(k, device=device, **{**kw, "max_iter": 1}).fit(X)
            t = time.perf_counter()
            gz = GaussianMixture(k, device=device, **kw).fit(X)
            if device != "cpu":
                torch.cuda.synchronize()
            t_gz = time.perf_counter() - t
        rows.append(
            {
                "d": d,
                "N": n,
                "K": k,
                "iterations": n_iter,
                "device": device,
                "scikit-learn (s)": t_sk,
                "gazeem (s)": t_gz,
                "sklearn / gazeem": t_sk / t_gz,
                "final log-lik sklearn": sk.score(X),
                "final log-lik gazeem": float(gz.score(X)),
                "rel. difference": abs(gz.score(X) - sk.score(X)) / abs(sk.score(X)),
                "means rel. difference": float(
                    np.abs(gz.means_ - sk.means_).max() / np.abs(sk.means_).max()
                ),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    return md_table(rows)


if __name__ == "__main__":
    print(markdown(run()))
