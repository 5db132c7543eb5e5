"""Test yardsticks, written the straightforward way, outside the package.

- :func:`reference_window_loglik`: the E-step as the reference notes write it. For each
  fixation it lists the candidate cells, cuts the retinal patch of every (bin, cell)
  pair and evaluates all pairs as one matmul over cells and units: vectorised within a
  fixation, a loop over fixations, every patch materialised. The tests check that the
  convolutional E-step gives the same posterior; the benchmarks measure the speed-up.
- :func:`brute_force_paths` and :func:`brute_force_marginals`: the per-bin chain by
  enumerating every path (tiny chains only), against which forward–backward and
  Viterbi are checked.
"""

from __future__ import annotations

import numpy as np
import torch

from gazeem.gaze.hmm import DRIFT, RESET, Chain, axis_kernel, drift_kernel
from gazeem.gaze.patches import gather_crops, lagged_frame_index


def reference_window_loglik(data, response, windows) -> torch.Tensor:
    """``(F, K)`` float64 response log-likelihood per fixation and window cell."""
    p, lags = response.patch_size, response.n_lags
    ox, oy = data.geometry.rf_offset_px
    n_fix, k = windows.cells.shape[:2]
    out = torch.zeros((n_fix, k), dtype=torch.float64, device=data.counts.device)
    fix_of_bin = data.fixation[data.fit_bins]
    bounds = torch.searchsorted(fix_of_bin, torch.arange(n_fix + 1, device=fix_of_bin.device))
    with torch.no_grad():
        for f in range(n_fix):
            bins = data.fit_bins[bounds[f] : bounds[f + 1]]
            if bins.numel() == 0:
                continue
            cells = windows.cells[f]  # (K, 2) stimulus pixels
            n = bins.numel()
            pair_bins = bins.repeat_interleave(k)
            pair_cells = cells.repeat(n, 1)
            x = gather_crops(
                data.frames,
                lagged_frame_index(data.frame, pair_bins, lags),
                pair_cells[:, 1] + oy - p // 2,
                pair_cells[:, 0] + ox - p // 2,
                p,
            )  # (n K, L, P, P)
            ll = response.log_likelihood(x, data.counts[pair_bins], pair_cells.to(x.dtype))
            out[f] = ll.reshape(n, k).to(torch.float64).sum(0)
    return out


def brute_force_paths(
    chain: Chain, log_emission: torch.Tensor, sigma_drift: float, sigma_sacc: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every path ``(K^N, N)`` and its joint log score (tiny chains only; for tests)."""
    s, n = chain.side, chain.length
    k = s * s
    md = drift_kernel(s, sigma_drift)
    paths = np.array(np.meshgrid(*[np.arange(k)] * n, indexing="ij")).reshape(n, -1).T
    le = log_emission.numpy()
    init = chain.log_init.numpy()
    score = init[int(chain.group[0])][paths[:, 0]] + le[0][paths[:, 0]]
    for pos in range(1, n):
        kind = int(chain.kind[pos])
        if kind == RESET:
            score = score + init[int(chain.group[pos])][paths[:, pos]]
        else:
            mr, mc = (md, md) if kind == DRIFT else axis_kernel(s, sigma_sacc, chain.shift[pos])
            log_t = torch.kron(mr, mc).log().numpy()
            score = score + log_t[paths[:, pos - 1], paths[:, pos]]
        score = score + le[pos][paths[:, pos]]
    return paths, score


def brute_force_marginals(
    chain: Chain, log_emission: torch.Tensor, sigma_drift: float, sigma_sacc: float
) -> tuple[np.ndarray, float]:
    """``(N, K)`` marginals and ``log p`` by enumerating every path (tiny chains only; tests)."""
    paths, score = brute_force_paths(chain, log_emission, sigma_drift, sigma_sacc)
    log_p = float(np.logaddexp.reduce(score))
    w = np.exp(score - log_p)
    marg = np.zeros((chain.length, chain.side**2))
    for pos in range(chain.length):
        np.add.at(marg[pos], paths[:, pos], w)
    return marg, log_p
