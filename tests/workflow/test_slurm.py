"""The demo workflow on a real one-node SLURM cluster, through snakemake-executor-plugin-slurm.

Runs when CI=true or GAZEEM_SLURM=1 (it installs Debian's slurm-wlm and munge when they are
missing, which needs root, and starts and stops the daemons itself).
"""

import os
import re
import subprocess

import numpy as np
import pytest
import xarray as xr
import yaml

from gazeem.sizing import SessionSize, fit_resources

from .conftest import TINY, make_project, snakemake
from .slurm_cluster import SlurmUnavailable, one_node_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def cluster_env(tmp_path):
    if os.environ.get("CI") != "true" and os.environ.get("GAZEEM_SLURM") != "1":
        pytest.skip("the SLURM test runs when CI=true or GAZEEM_SLURM=1")
    try:
        with one_node_cluster(tmp_path / "slurm") as env:
            yield env
    except SlurmUnavailable as err:
        pytest.skip(str(err)) if os.environ.get("CI") != "true" else pytest.fail(str(err))


def test_demo_on_slurm_matches_a_local_run(tmp_path, cluster_env, tiny_run):
    project = make_project(tmp_path / "p", TINY)
    snakemake(
        project,
        "--workflow-profile",
        "workflow/profiles/slurm",
        "--executor",
        "slurm",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "3",
        "--set-threads",
        "fit=2",
        "--jobs",
        "4",
        env=cluster_env,
    )
    # every session's ingest and fit ran as a SLURM job
    for rule in ("ingest", "fit"):
        for s in ("demo1", "demo2", "demo3"):
            log = (project / "logs" / rule / f"{s}.log").read_text()
            assert re.search(r"running as SLURM job \d+ on \S+", log), log[:500]
    # each fit asked SLURM for the memory that its own session needs (gazeem.sizing)
    fit_settings = yaml.safe_load((project / "config" / "config.yaml").read_text())["fit"]
    for s in ("demo1", "demo2", "demo3"):
        size = SessionSize.from_file(project / "results" / "sessions" / f"{s}.nc")
        log = (project / "logs" / "fit" / f"{s}.log").read_text()
        job = re.search(r"running as SLURM job (\d+)", log).group(1)
        shown = subprocess.run(
            ["scontrol", "show", "job", job], capture_output=True, text=True, env=cluster_env
        ).stdout
        need = fit_resources(size, fit_settings)
        mem = re.search(r"MinMemoryNode=(\d+)M", shown)  # the plugin passes --mem mem_mb
        assert mem and int(mem.group(1)) == need.mem_mb, shown
        limit = re.search(r"TimeLimit=(\d+):(\d+):00", shown)
        assert limit and 60 * int(limit.group(1)) + int(limit.group(2)) == need.runtime, shown
    # and gave the same numbers as the local run
    for s in ("demo1", "demo2", "demo3"):
        a = xr.open_dataset(project / "results" / "sessions" / f"{s}.nc", engine="h5netcdf")
        b = xr.open_dataset(tiny_run / "results" / "sessions" / f"{s}.nc", engine="h5netcdf")
        for v in ("counts", "eye", "fixation", "frame", "stimulus", "true_gaze"):
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{s}: {v}")
        fa = xr.open_dataset(project / "results" / "fits" / f"{s}.nc", engine="h5netcdf")
        fb = xr.open_dataset(tiny_run / "results" / "fits" / f"{s}.nc", engine="h5netcdf")
        for v in ("gaze_mean", "gaze_sd", "rf", "rf_initial", "loglik", "sigma", "gain"):
            np.testing.assert_array_equal(fa[v].values, fb[v].values, err_msg=f"{s}: {v}")
    assert (project / "results" / "summary" / "params.tsv").exists()
