"""`make bench`: run every benchmark and write docs/performance.md.

Ratios are measured side by side in one run (absolute times on a shared machine drift).
Sections can be chosen: ``python -m benchmarks.run estep mixtures``.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path

from benchmarks import (
    calibration,
    em_scaling,
    estep,
    fit_memory,
    gauge,
    gpu,
    hmm,
    ingest_scale,
    mixtures,
    photographs,
    profile_fit,
    whole_fit,
    window_mstep,
    workflow,
)
from benchmarks.common import machine, md_table, sgemm_peak_gflops

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "results.json"
SECTIONS = (
    "estep",
    "hmm",
    "em_scaling",
    "memory",
    "ingest",
    "mixtures",
    "photographs",
    "window_mstep",
    "gauge",
    "calibration",
    "whole_fit",
    "profile",
    "workflow",
    "gpu",
)


def main(argv: list[str]) -> None:
    wanted = argv or list(SECTIONS)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = machine()
    results["machine"]["sgemm_peak_gflops"] = sgemm_peak_gflops()
    results["date"] = _dt.date.today().isoformat()
    runners = {
        "estep": estep.run,
        "hmm": hmm.run,
        "em_scaling": lambda: {"scaling": em_scaling.run(), "demo": em_scaling.demo_iterations()},
        "memory": fit_memory.run,
        "ingest": lambda: ingest_scale.main([]),
        "mixtures": mixtures.run,
        "photographs": photographs.run,
        "window_mstep": window_mstep.run,
        "gauge": gauge.run,
        "calibration": calibration.run,
        "whole_fit": whole_fit.run,  # hours on 2 cores: noise 10/30/60 min, photographs 10/30
        "profile": profile_fit.run,
        "workflow": workflow.run,
        "gpu": gpu.run,  # records "skipped" where torch sees no CUDA device
    }
    for name in wanted:
        print(f"== {name}", flush=True)
        results[name] = runners[name]()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1, default=str))
    print(f"results in {OUT}; see docs/performance.md for the write-up")


def tables(results: dict) -> dict[str, str]:
    """Markdown tables of the stored results (for pasting into docs/performance.md)."""
    out = {}
    if "estep" in results:
        out["estep"] = estep.markdown(results["estep"])
    if "hmm" in results:
        out["hmm"] = hmm.markdown(results["hmm"])
    if "em_scaling" in results:
        out["em_scaling"] = (
            em_scaling.markdown(results["em_scaling"]["scaling"])
            + "\n\n"
            + md_table(results["em_scaling"]["demo"])
        )
    if "memory" in results:
        out["memory"] = fit_memory.markdown(results["memory"])
    if "ingest" in results:
        out["ingest"] = md_table(
            results["ingest"],
            ["minutes", "frames", "seconds", "peak_mb", "output_float32_mb", "output_mb"],
        )
    if "mixtures" in results:
        out["mixtures"] = mixtures.markdown(results["mixtures"])
    if "photographs" in results:
        out["photographs"] = photographs.markdown(results["photographs"])
    if "window_mstep" in results:
        out["window_mstep"] = window_mstep.markdown(results["window_mstep"])
    if "gauge" in results:
        out["gauge"] = gauge.markdown(results["gauge"])
    if "calibration" in results:
        out["calibration"] = calibration.markdown(results["calibration"])
    if "whole_fit" in results:
        out["whole_fit"] = whole_fit.markdown(results["whole_fit"])
    if "profile" in results:
        out["profile"] = profile_fit.markdown(results["profile"])
    if "workflow" in results:
        out["workflow"] = workflow.markdown(results["workflow"])
    if "gpu" in results:
        out["gpu"] = gpu.markdown(results["gpu"])
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["tables"]:
        for k, v in tables(json.loads(OUT.read_text())).items():
            print(f"## {k}\n\n{v}\n")
    else:
        main(sys.argv[1:])
