"""The Snakemake workflow end to end, on the embedded demo at a tiny size."""

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from gazeem.figures import SESSION_FIGURES
from gazeem.io.dataset import validate_session

from .conftest import ROOT, TINY, make_project, snakemake

pytestmark = pytest.mark.slow
SESSIONS = ["demo1", "demo2", "demo3"]
FIGURES = list(SESSION_FIGURES)  # every figure the package draws for a session


def job_counts(output: str) -> dict[str, int]:
    """The 'job  count' table of a dry run."""
    counts = {}
    for line in output.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_dry_run_of_the_shipped_config(tmp_path):
    project = make_project(tmp_path / "p")
    out = snakemake(project, "-n")
    counts = job_counts(out.stdout + out.stderr)
    assert counts == {
        "simulate": 3,
        "ingest": 3,
        "fit": 3,
        "locate_fields": 3,
        "figures_fields": 3,
        "export_nwb": 3,
        "figures_session": 3,
        "aggregate": 1,
        "figures_summary": 1,
        "all": 1,
    }


def test_lint_is_clean():
    out = snakemake(ROOT, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def test_every_target_exists_and_is_valid(tiny_run):
    r = tiny_run / "results"
    for s in SESSIONS:
        assert (tiny_run / "resources" / "demo" / f"{s}.nwb").stat().st_size > 0
        ds = validate_session(xr.open_dataset(r / "sessions" / f"{s}.nc", engine="h5netcdf"))
        assert "true_gaze" in ds  # the demo's truth survives the NWB round trip
        fit = xr.open_dataset(r / "fits" / f"{s}.nc", engine="h5netcdf")
        assert fit.sizes["time"] == ds.sizes["time"] and int(fit.attrs["n_iter"]) <= 3
        assert (r / "export" / f"{s}.nwb").stat().st_size > 0
        for name in FIGURES:
            assert_real_image(r / "figures" / s / f"{name}.png")
            assert (r / "figures" / s / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    params = pd.read_csv(r / "summary" / "params.tsv", sep="\t")
    assert params["session"].tolist() == SESSIONS
    assert np.all(params["sigma_deg"] > 0) and np.all(np.isfinite(params["bits_per_spike_gain"]))
    assert xr.open_dataset(r / "summary" / "params.nc", engine="h5netcdf").sizes["session"] == 3
    for name in ("tracker", "rf_improvement"):
        assert_real_image(r / "figures" / "summary" / f"{name}.png")
    html = (r / "report.html").read_text()
    assert "gaze_trace.png" in html and "rf_improvement.png" in html


def assert_real_image(path):
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.shape[0] > 300 and img.shape[1] > 300, path
    assert img.std() > 5 and len(np.unique(img)) > 20, f"{path} looks blank"


def test_logs_record_config_device_iterations_and_convergence(tiny_run):
    log = (tiny_run / "logs" / "fit" / "demo1.log").read_text()
    assert "fitting results/sessions/demo1.nc with config" in log and "window_k: 3.0" in log
    assert re.search(r"device cpu: \d+ iterations, converged=(True|False)", log)
    num = r"-?[\d.]+(?:e[+-]?\d+)?"
    assert re.search(
        rf"iteration 1: log-likelihood {num}, gaze moved {num} px RMS \({num} at most\), [\d.]+ s",
        log,
    )
    assert "EM demo1" in log  # the tqdm bar


def test_rerun_after_deleting_one_fit_redoes_only_that_session(tmp_path, tiny_run):
    import shutil

    project = tmp_path / "copy"
    shutil.copytree(tiny_run, project, symlinks=True)
    fits = project / "results" / "fits"
    before = {s: (fits / f"{s}.nc").stat().st_mtime_ns for s in SESSIONS}
    (fits / "demo2.nc").unlink()
    counts = job_counts(snakemake(project, "-n").stdout)
    assert counts == {
        "fit": 1,
        "export_nwb": 1,
        "figures_session": 1,
        "aggregate": 1,
        "figures_summary": 1,
        "all": 1,
    }
    snakemake(project)
    assert (fits / "demo2.nc").exists()
    for s in ("demo1", "demo3"):
        assert (fits / f"{s}.nc").stat().st_mtime_ns == before[s]


HEADER = "session\tpath\tformat\tsimulate\tppd\n"


@pytest.mark.parametrize(
    "config,sessions,message",
    [
        ({"fit": {"max_iter": "many"}}, None, r"'many' is not of type 'integer'"),
        (
            {"fit": {"windw_k": 3.0}},
            None,
            r"Additional properties are not allowed \('windw_k' was unexpected\)",
        ),
        (
            {"colour": "red"},
            None,
            r"Additional properties are not allowed \('colour' was unexpected\)",
        ),
        (
            None,
            HEADER + "s1\tdata/missing.nwb\tnwb\tfalse\t20\n",
            r"field 'path': data/missing.nwb does not exist",
        ),
        (
            None,
            HEADER + "s1\tresources/demo/s1.nwb\tnwb\ttrue\tfast\n",
            r"'fast' is not of type 'number'",
        ),
        (
            None,
            HEADER + "s1\tresources/demo/s1.nwb\tzarr\ttrue\t20\n",
            r"'zarr' is not one of \['nwb', 'hdf5'\]",
        ),
        (
            None,
            HEADER + "s1\tresources/demo/s1.nwb\tnwb\ttrue\t20\n"
            "s1\tresources/demo/s1.nwb\tnwb\ttrue\t20\n",
            r"gazeem ERROR: config/sessions.tsv row 3: field 'session': 's1' appears twice",
        ),
        (
            None,
            HEADER + "..\tresources/demo/...nwb\tnwb\ttrue\t20\n",
            r"gazeem ERROR: config/sessions.tsv row 2: field 'session': '\.\.' does not match",
        ),
        (
            None,
            HEADER + "s1\tresources/demo/s1.nwb\tnwb\ttrue\t20\tred\n",
            r"gazeem ERROR: config/sessions.tsv row 2: has 6 tab-separated fields, the header has 5",
        ),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, config, sessions, message):
    project = make_project(tmp_path / "p", {**TINY, **(config or {})} if config else TINY, sessions)
    if config and "fit" in config:
        cfg_text = (project / "config" / "config.yaml").read_text()
        assert "max_iter" in cfg_text or "windw_k" in cfg_text
    out = snakemake(project, check=False)
    assert out.returncode != 0
    assert re.search(message, out.stdout + out.stderr), (out.stdout + out.stderr)[-2000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert not (project / "results").exists() and not (project / "logs").exists()


def test_every_config_key_is_documented_and_matches_the_code():
    import dataclasses

    import yaml

    from gazeem.config import config_schema_path
    from gazeem.gaze.estimator import GazeEM
    from gazeem.gaze.settings import PARAMETER_CONSTRAINTS
    from gazeem.ingest import IngestSettings
    from gazeem.locate import LocateSettings
    from gazeem.simulate import SimulationConfig

    schema = yaml.safe_load(config_schema_path().read_text())["properties"]
    readme = (ROOT / "config" / "README.md").read_text()
    code = {
        "fit": set(GazeEM._param_names()) - {"response_model", "progress"},
        "ingest": {f.name for f in dataclasses.fields(IngestSettings)},
        # images (photographs) are an array: given from Python, not from a config file
        "simulate": {f.name for f in dataclasses.fields(SimulationConfig)}
        - {"session", "extra", "images"},
        "locate": {f.name for f in dataclasses.fields(LocateSettings)},
    }
    # the schema's fit section is the estimator's constraints table, written out
    assert schema["fit"]["properties"] == PARAMETER_CONSTRAINTS
    for section, names in code.items():
        assert set(schema[section]["properties"]) == names, section
        for name in names:
            assert f"`{name}`" in readme, f"{section}.{name} is not documented in config/README.md"
    for name in ("sessions", "export_nwb", "max_units_in_rf_figure"):
        assert name in readme
