# Config and session table, validated before any job starts, and the input functions.
import json
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

import gazeem

# every rule has it as a param, so that a new gazeem version re-runs the pipeline
GAZEEM_VERSION = gazeem.__version__

# rules call the `gazeem` CLI installed beside the Python that runs Snakemake (.venv/bin);
# SLURM job steps do not inherit the submitting shell's PATH, so every shell command sets it
shell.prefix(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; ")


validate(config, "../schemas/config.schema.yaml")

SESSION_TABLE = pd.read_csv(
    config["sessions"], sep="\t", dtype={"session": str}, comment="#"
).set_index("session", drop=False)
validate(SESSION_TABLE, "../schemas/sessions.schema.yaml")
SESSIONS = SESSION_TABLE.index.tolist()
SIMULATED = [s for s in SESSIONS if bool(SESSION_TABLE.loc[s, "simulate"])]
NWB_SESSIONS = [s for s in SESSIONS if SESSION_TABLE.loc[s, "format"] == "nwb"]

FIGURES = ["gaze_trace", "correction", "posteriors", "rfs", "loglik", "truth", "drift"]
SUMMARY_FIGURES = ["tracker", "rf_improvement"]


def _check_sources():
    """Every source file exists, or is one the workflow simulates (resources/demo/)."""
    for s in SESSIONS:
        path = SESSION_TABLE.loc[s, "path"]
        if s in SIMULATED:
            ext = "nwb" if SESSION_TABLE.loc[s, "format"] == "nwb" else "h5"
            if path != f"resources/demo/{s}.{ext}":
                raise ValueError(
                    f"{config['sessions']}: session {s}: field 'path': a simulated session must be "
                    f"at resources/demo/{s}.{ext}, got {path}"
                )
        elif not Path(path).exists():
            raise ValueError(
                f"{config['sessions']}: session {s}: field 'path': {path} does not exist"
            )


_check_sources()


wildcard_constraints:
    session="|".join(re.escape(s) for s in SESSIONS),


def source_file(wildcards):
    return SESSION_TABLE.loc[wildcards.session, "path"]


def session_row(wildcards):
    """The session's row, as params: a change to it re-runs that session's jobs."""
    row = SESSION_TABLE.loc[wildcards.session].to_dict()
    return {k: v for k, v in row.items() if pd.notnull(v)}


def simulate_seed(wildcards):
    return int(config["simulate"].get("seed", 0)) + SESSIONS.index(wildcards.session)


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
    targets += ["results/summary/params.nc", "results/summary/params.tsv"]
    targets += expand(
        "results/figures/summary/{name}.{ext}", name=SUMMARY_FIGURES, ext=["png", "pdf"]
    )
    if config["export_nwb"]:
        targets += expand("results/export/{session}.nwb", session=NWB_SESSIONS)
    return targets
