"""The workflow with a source path that a shell would misread, and after a killed run."""

import os
import signal
import subprocess
import time

import pytest
import xarray as xr

from gazeem.io.nwb import session_to_nwb
from gazeem.simulate import simulate_session

from .conftest import BIN, ROOT, TINY, make_project, snakemake

pytestmark = pytest.mark.slow

#: a space, a command separator and a command substitution: each would break or run
#: something if a rule put the path into its shell command unquoted
HOSTILE = "data/my data; touch INJECTED; $(touch INJECTED2)/s 1.nwb"


def test_whole_workflow_with_a_hostile_source_path(tmp_path):
    project = make_project(
        tmp_path / "p",
        TINY,
        "session\tpath\tformat\tppd\tstim_center_x_deg\tstim_center_y_deg\n"
        f"real1\t{HOSTILE}\tnwb\t20\t2.0\t-1.0\n",
    )
    sim = simulate_session(**{**TINY["simulate"], "seed": 3})
    session_to_nwb(sim, project / HOSTILE, eye_samples_per_bin=2)
    snakemake(project)
    assert not list(project.rglob("INJECTED*")), "a path in the table ran a command"
    fit = xr.open_dataset(project / "results" / "fits" / "real1.nc", engine="h5netcdf")
    assert fit.sizes["time"] > 600 and fit.attrs["source"].endswith("real1.nc")
    export = project / "results" / "export" / "real1.nwb"
    assert export.stat().st_size > (project / HOSTILE).stat().st_size
    assert (project / "results" / "figures" / "real1" / "rfs.png").stat().st_size > 10_000


def test_make_run_recovers_after_the_run_is_killed(tmp_path):
    """kill -9 mid-run leaves a lock; the README's command unlocks it and finishes."""
    project = make_project(tmp_path / "p", TINY)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "2"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    fits = project / "results" / "fits"
    exports = project / "results" / "export"

    def finished_fits():
        return [p for p in fits.glob("*.nc") if not p.name.startswith(".")]

    def exported():  # a session whose export finished has a fit Snakemake recorded as done
        return [p.stem for p in exports.glob("*.nwb") if not p.name.startswith(".")]

    deadline = time.time() + 300
    while time.time() < deadline and not exported():
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the jobs it started
    proc.wait()
    finished = {s: (fits / f"{s}.nc").stat().st_mtime_ns for s in exported()}
    assert finished, "no session finished before the kill"
    assert len(finished_fits()) < 3 or len(finished) < 3, "the run finished before the kill"
    assert any((project / ".snakemake" / "locks").iterdir())  # the stale lock
    plain = snakemake(project, check=False)
    assert plain.returncode != 0
    assert "Incomplete files" in plain.stderr or "cannot be locked" in plain.stderr
    blocked = snakemake(project, "--rerun-incomplete", check=False)
    assert blocked.returncode != 0 and "cannot be locked" in blocked.stderr

    # what `make run` does
    unlock = subprocess.run(
        [str(BIN / "python"), str(ROOT / "workflow" / "scripts" / "unlock_if_stale.py")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    snakemake(project, "--rerun-incomplete")
    for name, mtime in finished.items():  # finished sessions were kept, not redone
        assert (fits / f"{name}.nc").stat().st_mtime_ns == mtime
    assert len(finished_fits()) == 3
    assert not list(project.rglob(".*.tmp*")), "a temporary file was left behind"
