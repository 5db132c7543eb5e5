"""GPU figures (section ``gpu``, run only where torch sees CUDA).

Side by side in one process on the same machine: the exact E-step's reference
workload on the GPU against the same workload on this machine's CPU; a whole fit of a
simulated noise session (the same settings and iterations) on the GPU and on the CPU;
and the Gaussian mixture on the GPU against scikit-learn on the CPU (same start, same
number of EM steps).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from benchmarks import estep, mixtures
from benchmarks.common import md_table


def _fit_seconds(session, device: str, max_iter: int) -> tuple[float, object]:
    from gazeem.gaze.estimator import GazeEM

    est = GazeEM(
        patch_size=20, window_k=3.0, grid_margin_px=8, max_iter=max_iter, tol=0, device=device
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        est.fit(session)
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t, est


def fit_side_by_side(minutes: float = 10.0, max_iter: int = 5) -> dict:
    """One noise session (60 Hz, 64x64 px, 100 units), fitted on CUDA and on the CPU."""
    from tests.conftest import make_session

    n_bins = int(minutes * 60 * 60)
    # the simulator's default fields (2.0-3.2 px), as in the recorded H100 run
    session = make_session(
        "noise", n_bins=n_bins, patch_size=20, rf_sigma_px=(2.0, 3.2), rf_spread_px=2.0
    )
    t_gpu, gpu = _fit_seconds(session, "cuda", max_iter)
    t_cpu, cpu = _fit_seconds(session, "cpu", max_iter)
    diff = gpu.gaze_per_bin()["mean"] - cpu.gaze_per_bin()["mean"]
    return {
        "minutes": minutes,
        "bins": n_bins,
        "iterations": max_iter,
        "gpu_s": t_gpu,
        "cpu_s": t_cpu,
        "cpu_threads": torch.get_num_threads(),
        "cpu / gpu": t_cpu / t_gpu,
        "gpu_s_per_iteration": t_gpu / max(gpu.n_iter_, 1),
        "gaze_rms_difference_px": float(np.sqrt(np.nanmean((diff**2).sum(1)))),
        "loglik_gpu": float(gpu.loglik_[-1]),
        "loglik_cpu": float(cpu.loglik_[-1]),
    }


def long_fit(minutes: float = 60.0, latent: str = "fixation", max_iter: int = 50) -> dict:
    """Issue 19's long noise session (60 Hz, 64x64 px, 100 units), fitted to convergence on
    CUDA at the package defaults (``tol`` 1e-5 nats per bin): time, iterations, memory."""
    from tests.conftest import make_session

    from gazeem.coords import StimulusGeometry
    from gazeem.gaze.estimator import GazeEM

    n_bins = int(minutes * 60 * 60)
    t = time.perf_counter()
    session = make_session("noise", n_bins=n_bins, patch_size=20)
    t_sim = time.perf_counter() - t
    torch.cuda.reset_peak_memory_stats()
    est = GazeEM(patch_size=20, latent=latent, max_iter=max_iter, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        est.fit(session)
        torch.cuda.synchronize()
        t_fit = time.perf_counter() - t
    g = StimulusGeometry.from_dataset(session)
    truth = g.deg_to_px(session["true_gaze"].values)
    err = est.gaze_per_bin()["mean"] - truth
    raw = g.deg_to_px(session["eye"].values) - truth
    ok = np.isfinite(err).all(1)
    return {
        "minutes": minutes,
        "latent": latent,
        "bins": n_bins,
        "simulate_s": t_sim,
        "fit_s": t_fit,
        "recording / fit": minutes * 60 / t_fit,
        "n_iter": est.n_iter_,
        "converged": bool(est.converged_),
        "s_per_iteration": t_fit / max(est.n_iter_, 1),
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        "rms_px": float(np.sqrt((err[ok] ** 2).sum(1).mean())),
        "raw_rms_px": float(np.sqrt((raw[ok] ** 2).sum(1).mean())),
    }


def gmm_side_by_side(n: int = 1_000_000, k: int = 16, dims=(2, 32), n_iter: int = 20) -> list:
    """gazeem's GaussianMixture on CUDA against scikit-learn on the CPU."""
    return mixtures.run(n=n, k=k, dims=dims, n_iter=n_iter, device="cuda")


def run(save=None) -> dict:
    """Every GPU figure; ``save(out)`` is called after each part (partial results survive)."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    out = {"device": torch.cuda.get_device_name(0), "cpu_threads": torch.get_num_threads()}
    parts = {
        "estep_cuda": lambda: estep.run(device="cuda"),
        "estep_cpu": lambda: estep.run(device="cpu"),
        "fit": fit_side_by_side,
        "long_fit": long_fit,
        "gmm": gmm_side_by_side,
    }
    for name, part in parts.items():
        out[name] = part()
        if save is not None:
            save(out)
    return out


def markdown(r: dict) -> str:
    if "skipped" in r:
        return r["skipped"]
    rows = [
        {"E-step (reference workload)": "CUDA", "time (s)": r["estep_cuda"]["exact_s"]},
        {"E-step (reference workload)": "CPU", "time (s)": r["estep_cpu"]["exact_s"]},
    ]
    return "\n\n".join([md_table(rows), md_table([r["fit"]]), mixtures.markdown(r["gmm"])])


if __name__ == "__main__":
    import json
    import sys

    def save(out):
        print(json.dumps(out, indent=1, default=str), flush=True)
        if len(sys.argv) > 1:
            with open(sys.argv[1], "w") as f:
                json.dump(out, f, indent=1, default=str)

    run(save)
