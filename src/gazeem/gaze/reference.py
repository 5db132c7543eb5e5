"""A straightforward E-step, written the way the reference notes write it.

For each fixation: list its candidate cells, cut the retinal patch of every (bin, cell)
pair, and evaluate the response log-likelihood of all pairs as one matmul over cells
and units. It is vectorised within a fixation but loops over fixations, and it
materialises every patch. It is the yardstick for the convolutional E-step (the
benchmarks measure the speed-up; the tests check that both give the same posterior).
"""

from __future__ import annotations

import torch

from gazeem.gaze.patches import gather_crops, lagged_frame_index


def reference_window_loglik(data, response, windows) -> torch.Tensor:
    """``(F, K)`` float64 response log-likelihood per fixation and window cell."""
    p, lags = response.patch_size, response.n_lags
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
                pair_cells[:, 1] - p // 2,
                pair_cells[:, 0] - p // 2,
                p,
            )  # (n K, L, P, P)
            ll = response.log_likelihood(x, data.counts[pair_bins], pair_cells.to(x.dtype))
            out[f] = ll.reshape(n, k).to(torch.float64).sum(0)
    return out
