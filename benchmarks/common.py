"""Shared helpers: the machine's description, its sgemm peak, and timing."""

from __future__ import annotations

import os
import platform
import time

import torch


def best_time(fn, repeat: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeat`` calls (after ``warmup``), seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def timed_fit_with(session, module, name: str, value, iters: int, **est_kw):
    """``GazeEM`` fitted for exactly ``iters`` iterations while ``module.name`` is
    ``value`` (a side-by-side switch); returns ``(estimator, seconds)``. ``est_kw``
    overrides the settings (``tol``: stop at convergence, ``iters`` then the most)."""
    import warnings
    from unittest import mock

    from gazeem.gaze.estimator import GazeEM

    base = dict(patch_size=20, max_iter=iters, tol=0, device="cpu", heldout_check=False)
    est = GazeEM(**{**base, **est_kw})
    with mock.patch.object(module, name, value), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        est.fit(session)
        return est, time.perf_counter() - t


def sgemm_peak_gflops(n: int = 4096, repeat: int = 5) -> float:
    """Single-precision matmul throughput of this process, GFLOP/s (best of ``repeat``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeat) / 1e9


def machine() -> dict:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def time_ratios(rows: list[dict], name: str, key: str = "fit (s)", digits: int = 2) -> None:
    """Add column ``name``: each row's ``key`` over the first row's, as ``"1.93x"``
    (the side-by-side benchmarks' reference is their first row)."""
    for r in rows:
        r[name] = f"{r[key] / rows[0][key]:.{digits}f}x"


def md_table(rows: list[dict], cols: list[str] | None = None) -> str:
    cols = cols or list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
