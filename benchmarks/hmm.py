"""The per-bin HMM E-step (``latent: bin``) against the per-fixation E-step, and its scaling.

1. On the reference workload of :mod:`benchmarks.estep` (20,000 bins, 32 units, 32x32 px
   patches, 41x41 windows): one full E-step of each model, side by side.
2. Scaling with the window (grid) size: the forward-backward recursion alone (random
   emissions) and the whole HMM E-step on a smaller session, per bin and per cell.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from benchmarks.common import best_time, md_table
from benchmarks.estep import workload
from gazeem.gaze.drift import DriftProblem
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.hmm import DRIFT, RESET, SACCADE, Chain, GridHMM
from gazeem.gaze.settings import WindowSettings
from gazeem.models import UniformPrior


def _with_window(prob: FixationProblem, half: int, kind=FixationProblem):
    """The same model as a ``kind`` problem whose windows are ``2 half + 1`` cells wide."""
    settings = replace(prob.settings, window=WindowSettings(k=100.0, h_min=half, h_max=half))
    prior = prob.cell_prior if kind is FixationProblem else UniformPrior(prob.grid.n_cells)
    return kind(prob.data, prob.grid, prob.tracker, prior, prob.response, None, settings)


def reference_ratio() -> dict:
    prob, win = workload()
    prob = _with_window(prob, win.half)  # same 41x41 windows
    hmm = _with_window(prob, win.half, DriftProblem)
    t_fix, t_hmm = float("inf"), float("inf")
    for _ in range(2):  # alternate, so that drift in the machine's speed hits both alike
        t_fix = min(t_fix, best_time(prob.e_step, repeat=1, warmup=0))
        t_hmm = min(t_hmm, best_time(hmm.e_step, repeat=1, warmup=0))
    n = int(prob.data.fit_bins.numel())
    return {
        "bins": n,
        "window": win.side,
        "per_fixation_s": t_fix,
        "hmm_s": t_hmm,
        "per_fixation_us_per_bin": t_fix / n * 1e6,
        "hmm_us_per_bin": t_hmm / n * 1e6,
        "hmm_over_per_fixation": t_hmm / t_fix,
    }


def _random_chain(side: int, n: int, seed: int = 0) -> tuple[Chain, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kind = torch.full((n,), DRIFT, dtype=torch.int64)
    kind[::20] = SACCADE
    kind[::400] = RESET
    kind[0] = RESET
    group = torch.cumsum((kind != DRIFT).long(), 0) - 1
    shift = torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5
    log_init = torch.zeros(int(group.max()) + 1, side * side, dtype=torch.float64)
    emis = torch.randn(n, side * side, generator=g, dtype=torch.float64)
    return Chain(side, kind, shift, group, log_init), emis


def recursion_scaling(sides=(11, 21, 41, 61, 81), n: int = 4000) -> list[dict]:
    rows = []
    for side in sides:
        chain, emis = _random_chain(side, n)
        hmm = GridHMM(chain, 0.5, 2.0)

        def fb(hmm=hmm, emis=emis):
            return hmm.forward_backward(lambda lo, hi: emis[lo:hi], 1000, lambda *a: None)

        t = best_time(fb, repeat=2)
        rows.append(
            {
                "window": f"{side}x{side}",
                "cells": side * side,
                "us_per_bin": t / n * 1e6,
                "ns_per_bin_and_cell": t / n / side**2 * 1e9,
            }
        )
    return rows


def estep_scaling(halves=(5, 10, 15, 20, 30)) -> list[dict]:
    prob, _ = workload(n_bins=4000, n_units=32, patch=16)
    rows = []
    for half in halves:
        prob = _with_window(prob, half)
        hmm = _with_window(prob, half, DriftProblem)
        t_fix = best_time(prob.e_step, repeat=1)
        t_hmm = best_time(hmm.e_step, repeat=1)
        n = int(prob.data.fit_bins.numel())
        side = 2 * half + 1
        rows.append(
            {
                "window": f"{side}x{side}",
                "cells": side * side,
                "per_fixation_us_per_bin": t_fix / n * 1e6,
                "hmm_us_per_bin": t_hmm / n * 1e6,
                "hmm_ns_per_bin_and_cell": t_hmm / n / side**2 * 1e9,
                "hmm_over_per_fixation": t_hmm / t_fix,
            }
        )
    return rows


def run() -> dict:
    return {
        "reference": reference_ratio(),
        "recursion": recursion_scaling(),
        "estep": estep_scaling(),
    }


def markdown(r: dict) -> str:
    return "\n\n".join([md_table([r["reference"]]), md_table(r["recursion"]), md_table(r["estep"])])


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
