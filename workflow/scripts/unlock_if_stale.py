"""Unlock the working directory after a killed Snakemake run, never under a live one.

A Snakemake run that is killed (``kill -9``, a lost SSH session) leaves its lock in
``.snakemake/locks``, and the next run stops with "Directory cannot be locked". This
script removes that lock with ``snakemake --unlock`` only when no Snakemake process is
running in this directory; ``make run`` calls it before running the workflow with
``--rerun-incomplete``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def snakemake_running_in(root: Path) -> list[int]:
    """Process ids of Snakemake runs whose working directory is ``root`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = (entry / "cwd").resolve()
        except OSError:  # gone, or not ours to read
            continue
        words = [a.decode(errors="replace") for a in argv[:3]]
        is_snakemake = any(Path(w).name == "snakemake" for w in words) or (
            "-m" in words and "snakemake" in words
        )
        if is_snakemake and cwd == root:
            found.append(int(entry.name))
    return found


def main() -> int:
    root = Path.cwd().resolve()
    locks = root / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return 0
    running = snakemake_running_in(root)
    if running:
        print(f"Snakemake is running here (pid {running}); leaving its lock alone.")
        return 0
    print("removing the lock left by a Snakemake run that was killed")
    snakemake = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(snakemake), "--unlock", "--cores", "1"], cwd=root).returncode


if __name__ == "__main__":
    raise SystemExit(main())
