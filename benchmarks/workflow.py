"""Time and peak memory of each job of the last workflow run, from Snakemake's benchmark files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.common import md_table


def run(root: str = "benchmarks/out") -> list[dict]:
    rows = []
    for p in sorted(Path(root).glob("*/*.tsv")):
        t = pd.read_csv(p, sep="\t")
        rows.append(
            {
                "rule": p.parent.name,
                "job": p.stem,
                "wall (s)": float(t["s"].iloc[0]),
                "max RSS (MB)": float(t["max_rss"].iloc[0]),
                "CPU (s)": float(t["cpu_time"].iloc[0]),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no benchmark files: run `make run` first)"
    total = sum(r["wall (s)"] for r in rows)
    return (
        md_table(rows)
        + f"\n\nSum of job wall times: {total:.1f} s (jobs run two at a time on 2 cores)."
    )
