"""Run the Snakemake workflow in a temporary copy of the project."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TINY = {
    "simulate": {
        "seed": 1,
        "n_bins": 700,
        "n_units": 6,
        "stim_rows": 32,
        "stim_cols": 32,
        "ppd": 20.0,
        "stim_center_deg": [2.0, -1.0],
        "patch_size": 10,
        "rf_sigma_px": [1.5, 2.0],
        "rf_spread_px": 1.0,
        "gaze_range_px": 6.0,
    },
    "fit": {"patch_size": 10, "window_k": 3.0, "max_iter": 3, "device": "cpu"},
}


def make_project(dest: Path, config: dict | None = None, sessions: str | None = None) -> Path:
    """A copy of the workflow (Snakefile, workflow/, config/) with the given config."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    shutil.copytree(ROOT / "workflow", dest / "workflow", symlinks=True)
    shutil.copytree(ROOT / "config", dest / "config")
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    if config is not None:
        cfg.update(config)
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if sessions is not None:
        (dest / "config" / "sessions.tsv").write_text(sessions)
    return dest


def snakemake(
    project: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole demo at a tiny size, run once, with its report."""
    project = make_project(tmp_path_factory.mktemp("wf") / "project", TINY)
    snakemake(project)
    snakemake(project, "--report", "results/report.html")
    return project
