# Config and session table, validated before any job starts, and the input functions.
import json
import re
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import gazeem
from gazeem.config import config_schema_path
from gazeem.errors import GazeemError
from gazeem.io.sessions import read_sessions

# every rule has it as a param, so that a new gazeem version re-runs the pipeline
GAZEEM_VERSION = gazeem.__version__

# rules call the `gazeem` CLI installed beside the Python that runs Snakemake (.venv/bin);
# SLURM job steps do not inherit the submitting shell's PATH, so every shell command sets it
shell.prefix(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; ")


# one schema each, shipped in the package: the CLI validates its settings with the same
validate(config, str(config_schema_path()))
try:
    # gazeem's reader: row-numbered errors for bad fields, stray tabs and repeated names
    _TABLE = read_sessions(config["sessions"])
except GazeemError as err:
    raise WorkflowError(f"gazeem ERROR: {err}") from None
SESSIONS = list(_TABLE)
SIMULATED = [s for s in SESSIONS if _TABLE[s].simulate]
NWB_SESSIONS = [s for s in SESSIONS if _TABLE[s].format == "nwb"]

FIGURES = ["gaze_trace", "correction", "posteriors", "rfs", "loglik", "truth", "drift", "reliability"]
SUMMARY_FIGURES = ["tracker", "rf_improvement"]


def _check_sources():
    """Every source file exists, or is one the workflow simulates (resources/demo/)."""
    for s in SESSIONS:
        path = _TABLE[s].path
        if s in SIMULATED:
            ext = "nwb" if _TABLE[s].format == "nwb" else "h5"
            if path != f"resources/demo/{s}.{ext}":
                raise WorkflowError(
                    f"gazeem ERROR: {config['sessions']}: session {s}: field 'path': a simulated "
                    f"session must be at resources/demo/{s}.{ext}, got {path}"
                )
        elif not Path(path).is_file():
            raise WorkflowError(
                f"gazeem ERROR: {config['sessions']}: session {s}: field 'path': {path} does "
                "not exist"
            )


_check_sources()


wildcard_constraints:
    session="|".join(re.escape(s) for s in SESSIONS),


def source_file(wildcards):
    return _TABLE[wildcards.session].path


def session_row(wildcards):
    """The session's row, as params: a change to it re-runs that session's jobs."""
    return {k: v for k, v in asdict(_TABLE[wildcards.session]).items() if v is not None}


def simulate_seed(wildcards):
    return int(config["simulate"].get("seed", 0)) + SESSIONS.index(wildcards.session)


def simulated_fields(wildcards):
    """``--set rf_offset_px=[x, y]``: a simulated session's fields sit where its row says.

    ``rf_x_deg``, ``rf_y_deg`` (degrees, y up) become simulator pixels (y down).
    """
    row = _TABLE[wildcards.session]
    ppd = float(config["simulate"].get("ppd", row.ppd))
    offset = [row.rf_x_deg * ppd, -row.rf_y_deg * ppd]
    return shlex.quote(f"--set=rf_offset_px={json.dumps(offset)}")


def fit_resource(name):
    """A fit job's ``mem_mb`` or ``runtime`` from its ingested session (gazeem.sizing).

    Snakemake sizes a job again when it is scheduled, by which time the session exists;
    while the DAG is built it may not, and the generous default stands in.
    """

    def get(wildcards, input, attempt):
        from gazeem.sizing import UNSIZED, SessionSize, fit_resources

        if not Path(input.session).is_file():
            return getattr(UNSIZED, name) * attempt
        size = SessionSize.from_file(input.session)
        return getattr(fit_resources(size, config.get("fit", {}), attempt), name)

    return get


def cli_settings(section, exclude=()):
    """``--set key=value`` for each validated key of a config section (values as JSON)."""
    items = config.get(section, {}).items()
    return " ".join(
        shlex.quote(f"--set={k}={json.dumps(v)}") for k, v in items if k not in exclude
    )


def all_targets():
    targets = expand("results/fits/{session}.nc", session=SESSIONS)
    targets += expand(
        "results/figures/{session}/{name}.{ext}",
        session=SESSIONS,
        name=FIGURES,
        ext=["png", "pdf"],
    )
    targets += expand(
        "results/figures/{session}/fields_location.{ext}", session=SESSIONS, ext=["png", "pdf"]
    )
    targets += ["results/summary/params.nc", "results/summary/params.tsv"]
    targets += expand(
        "results/figures/summary/{name}.{ext}", name=SUMMARY_FIGURES, ext=["png", "pdf"]
    )
    if config["export_nwb"]:
        targets += expand("results/export/{session}.nwb", session=NWB_SESSIONS)
    return targets
