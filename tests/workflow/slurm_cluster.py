"""A one-node SLURM cluster on localhost for tests (Debian's slurm-wlm and munge).

It installs the packages when they are missing (root only), writes its own
``slurm.conf`` under a temporary folder (clients find it through ``SLURM_CONF``),
starts ``munged`` (unless one runs), ``slurmctld`` and ``slurmd``, and stops the
daemons it started, by their process ids.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

CONF = """\
ClusterName=gazeemtest
SlurmctldHost={host}
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
InactiveLimit=0
KillWait=5
Waittime=0
NodeName={host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here."""


def ensure_installed() -> None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm is not installed and installing it needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"],
        check=True,
        env=env,
        capture_output=True,
    )


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _start_munge() -> int | None:
    """Start munged unless one runs; return its pid when this call started it."""
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return None
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        tool = shutil.which("mungekey")
        cmd = [tool, "-c", "-k", str(key)] if tool else ["create-munge-key"]
        subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run(["chown", "-R", "munge:munge", "/etc/munge"], check=True)
    run = Path("/run/munge")
    run.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "munge:munge", str(run)], check=True)
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    for _ in range(50):
        pid = _pid(run / "munged.pid")
        if pid:
            return pid
        time.sleep(0.1)
    raise SlurmUnavailable("munged did not start")


@contextmanager
def one_node_cluster(tmp: Path):
    """Yield the environment (with ``SLURM_CONF``) of a running one-node cluster.

    The configuration is also installed at ``/etc/slurm/slurm.conf`` while the cluster
    runs (job steps look there), and the previous file, if any, is restored afterwards.
    """
    ensure_installed()
    tmp = Path(tmp)
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    (tmp / "spool").mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    conf = tmp / "slurm.conf"
    conf.write_text(
        CONF.format(
            host=host,
            state=tmp / "state",
            spool=tmp / "spool",
            tmp=tmp,
            cpus=os.cpu_count(),
            mem=mem_mb,
            ctld_port=6817,
            d_port=6818,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    # job steps (srun inside a job) read the default path, not SLURM_CONF: install ours
    # there for the cluster's lifetime and put back whatever was there
    system_conf = Path("/etc/slurm/slurm.conf")
    backup = system_conf.read_bytes() if system_conf.exists() else None
    system_conf.parent.mkdir(parents=True, exist_ok=True)
    system_conf.write_text(conf.read_text())
    started: list[int] = []
    try:
        munge_pid = _start_munge()
        if munge_pid:
            started.append(munge_pid)
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, capture_output=True)
        time.sleep(1)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, capture_output=True)
        for name in ("slurmctld", "slurmd"):
            for _ in range(50):
                pid = _pid(tmp / f"{name}.pid")
                if pid:
                    started.append(pid)
                    break
                time.sleep(0.1)
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True
            )
            if out.stdout.strip() in ("idle", "mix", "alloc"):
                break
            time.sleep(1)
        else:
            logs = "".join(
                (tmp / f).read_text()[-1500:]
                for f in ("slurmctld.log", "slurmd.log")
                if (tmp / f).exists()
            )
            raise SlurmUnavailable(f"the node did not come up: sinfo says {out.stdout!r}\n{logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--user", str(os.getuid())], env=env, capture_output=True)
        for pid in reversed(started):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in started:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        if backup is None:
            system_conf.unlink(missing_ok=True)
        else:
            system_conf.write_bytes(backup)
