"""E-step throughput on the reference workload, against the machine's peak and the reference.

Reference workload: 20,000 bins, 32 units, a 32x32 px RF patch, a 41x41 window of candidate
cells. The response model has the simulator's true receptive fields, so the posteriors are as
sharp as in a converged fit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tests.conftest import make_session
from tests.oracles import reference_window_loglik

from benchmarks.common import best_time, md_table, sgemm_peak_gflops
from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.settings import ProblemSettings, WindowSettings
from gazeem.gaze.windows import make_windows
from gazeem.models import PoissonLN, TrackerModel, UniformPrior

HALF = 20  # 41 x 41 window


def workload(
    n_bins: int = 20000, n_units: int = 32, patch: int = 32, device: str = "cpu", seed: int = 0
):
    ds = make_session("reference", seed=seed, n_bins=n_bins, n_units=n_units, patch_size=patch)
    dev = torch.device(device)
    data = GazeData.from_dataset(ds, dev, torch.float32)
    resp = PoissonLN(n_units, patch).to(dev)
    with torch.no_grad():
        resp.rf.copy_(torch.as_tensor(ds["true_rf"].values))
        resp.bias.copy_(torch.as_tensor(ds["true_bias"].values, dtype=torch.float32))
    grid = GazeGrid(0, 127, 0, 127)
    tracker = TrackerModel(sigma=5.0)
    tracker.gain = torch.as_tensor(np.asarray(ds.attrs["true_gain"]).reshape(2, 2))
    settings = ProblemSettings(window=WindowSettings(k=4.0, h_max=HALF))
    prob = FixationProblem(data, grid, tracker, UniformPrior(grid.n_cells), resp, None, settings)
    win = make_windows(data, tracker, grid, HALF)
    return prob, win


def unfused_window_log_likelihood(resp, crops, y, positions):
    """The exact E-step's likelihood as it was before issue 19: ``y·g − exp(g)`` formed
    over ``(T, N, W, W)`` and summed over units (six passes over the drive)."""
    g = F.conv2d(crops, resp.rf) + resp.bias[None, :, None, None]
    ll = (y[:, :, None, None] * g - torch.exp(g)).sum(1)
    return ll - torch.lgamma(y + 1).sum(1)[:, None, None]


def posterior(prob, win, resp_ll):
    other = prob.tracker.log_prob(prob.data.fix_reading, prob.tracker_positions(win)).to(resp_ll)
    log_q = torch.log_softmax(resp_ll + other, dim=1)
    cells = win.cells.to(torch.float64)
    mean = torch.einsum("fk,fki->fi", log_q.exp(), cells)
    return log_q, mean


def run(device: str = "cpu") -> dict:
    peak = sgemm_peak_gflops()
    prob, win = workload(device=device)
    data = prob.data
    t_bins = int(data.fit_bins.numel())
    n_units, p = prob.response.n_units, prob.response.patch_size
    k = win.side**2
    flops = 2.0 * t_bins * n_units * k * p * p

    t_exact = best_time(lambda: prob.window_loglik(win), repeat=2)
    exact = prob.window_loglik(win)
    # side by side: the same E-step with the unfused likelihood
    fused = prob.window_ll

    def unfused():
        return lambda c, y, z: unfused_window_log_likelihood(prob.response, c, y, z)

    prob.window_ll = unfused
    t_unfused = best_time(lambda: prob.window_loglik(win), repeat=2)
    unfused_ll = prob.window_loglik(win)
    prob.window_ll = fused

    # the reference on the first fixations (it is slow), scaled per bin
    n_sub = 60
    sub_bins = int((data.fixation[data.fit_bins] < n_sub).sum())

    class Sub:
        pass

    sub = Sub()
    sub.cells = win.cells[:n_sub]
    t_ref = best_time(lambda: reference_window_loglik(data, prob.response, sub), repeat=1, warmup=0)
    ref = reference_window_loglik(data, prob.response, sub)
    q_exact = torch.softmax(exact[:n_sub], 1)
    q_ref = torch.softmax(ref, 1)
    ref_per_bin = t_ref / sub_bins

    t_fast = best_time(lambda: prob.window_loglik_fast(win, torch.zeros_like(exact)), repeat=2)
    other = prob.tracker.log_prob(data.fix_reading, prob.tracker_positions(win)).to(exact)
    fast = prob.window_loglik_fast(win, other)
    _, mean_exact = posterior(prob, win, exact)
    _, mean_fast = posterior(prob, win, fast)
    err = float(torch.sqrt(((mean_fast - mean_exact) ** 2).sum(1).mean()))

    return {
        "device": device,
        "bins": t_bins,
        "units": n_units,
        "patch": p,
        "window": win.side,
        "sgemm_peak_gflops": peak,
        "exact_s": t_exact,
        "exact_gflops": flops / t_exact / 1e9,
        "exact_fraction_of_peak": flops / t_exact / 1e9 / peak,
        "exact_unfused_s": t_unfused,
        "exact_unfused_fraction_of_peak": flops / t_unfused / 1e9 / peak,
        "fused_vs_unfused_max_loglik_diff_per_bin": float(
            (
                (exact - unfused_ll).abs() / torch.bincount(data.fixation[data.fit_bins])[:, None]
            ).max()
        ),
        "reference_s_per_bin": ref_per_bin,
        "reference_s_full_estimate": ref_per_bin * t_bins,
        "speedup_exact_vs_reference": ref_per_bin * t_bins / t_exact,
        "max_posterior_diff_exact_vs_reference": float((q_exact - q_ref).abs().max()),
        "fast_s": t_fast,
        "speedup_fast_vs_reference": ref_per_bin * t_bins / t_fast,
        "speedup_fast_vs_exact": t_exact / t_fast,
        "fast_mean_error_px_rms": err,
    }


def markdown(r: dict) -> str:
    rows = [
        {
            "E-step": "exact (batched conv2d)",
            "time (s)": r["exact_s"],
            "GFLOP/s": r["exact_gflops"],
            "vs reference": r["speedup_exact_vs_reference"],
        },
        {
            "E-step": "exact, unfused likelihood (before issue 19)",
            "time (s)": r["exact_unfused_s"],
            "GFLOP/s": r["exact_gflops"] * r["exact_s"] / r["exact_unfused_s"],
            "vs reference": r["speedup_exact_vs_reference"] * r["exact_s"] / r["exact_unfused_s"],
        },
        {
            "E-step": "straightforward reference",
            "time (s)": r["reference_s_full_estimate"],
            "GFLOP/s": r["exact_gflops"] * r["exact_s"] / r["reference_s_full_estimate"],
            "vs reference": 1.0,
        },
        {
            "E-step": "fast (unit-summed conv + exact top-25)",
            "time (s)": r["fast_s"],
            "GFLOP/s": "n/a",
            "vs reference": r["speedup_fast_vs_reference"],
        },
    ]
    return md_table(rows)
