"""Hostile and malformed input at the command line: one clear error, nothing half-written.

Each case runs the real ``gazeem`` command in a subprocess, as a user would, and checks
that it exits with status 2, prints exactly one ``gazeem ERROR:`` line naming the file
and the field at fault, prints no traceback, and leaves no output or temporary file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from gazeem.io.dataset import write_netcdf_atomic
from gazeem.io.hdf5 import session_to_hdf5
from gazeem.io.nwb import session_to_nwb

from .conftest import SIM

pytestmark = pytest.mark.slow

#: a fixed memory limit, so that the resource checks answer the same on every machine
ENV = {"GAZEEM_MAX_MEMORY_MB": "2048"}
TABLE_HEADER = "session\tpath\tformat\tppd\tstim_center_x_deg\tstim_center_y_deg\tlag_bins\n"


def gazeem(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gazeem.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV, **(env or {})},
        timeout=300,
    )


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_clean_failure(proc, file: str, field: str) -> str:
    """Exit 2, one error line naming ``file`` and ``field``, no traceback; returns the line."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if "gazeem ERROR:" in ln]
    assert len(lines) == 1, err[-3000:]
    line = lines[0]
    assert file in line, f"{file!r} not named in: {line}"
    assert f"field '{field}" in line, f"field {field!r} not named in: {line}"
    return line


@pytest.fixture(scope="module")
def work(sim, tmp_path_factory):
    """Good inputs of every kind: sources, a session dataset, a fit, a parameter table."""
    root = tmp_path_factory.mktemp("hostile")
    session_to_nwb(sim, root / "good.nwb", eye_samples_per_bin=4)
    session_to_hdf5(sim, root / "good.h5", eye_samples_per_bin=4)
    write_netcdf_atomic(sim, root / "session.nc")
    fit_args = ["--set", "patch_size=12", "--set", "max_iter=1", "--device", "cpu"]
    proc = gazeem("fit", "session.nc", "fit.nc", *fit_args, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = gazeem(
        "aggregate", "fit.nc", "--params-nc", "params.nc", "--params-tsv", "p.tsv", cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.fixture
def case(work, tmp_path):
    """A fresh folder with copies of the good inputs; outputs go to ``out/``."""
    for name in ("good.nwb", "good.h5", "session.nc", "fit.nc", "params.nc"):
        shutil.copy(work / name, tmp_path / name)
    (tmp_path / "out").mkdir()
    return tmp_path


def truncate(path: Path, keep: float = 0.3) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- gazeem's own files: fit, aggregate, figures, export-nwb -------------------------------


def _damage(kind: str, path: Path) -> None:
    if kind == "missing":
        path.unlink()
    elif kind == "truncated":
        truncate(path)
    elif kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "not-netcdf":
        path.write_text("session,time\nabc,1\n")


DAMAGE_FIELD = {"missing": "path", "truncated": "/", "zero-byte": "/", "not-netcdf": "/"}


@pytest.mark.parametrize("kind", list(DAMAGE_FIELD))
@pytest.mark.parametrize(
    "verb,target",
    [
        (["fit", "session.nc", "out/fit.nc", "--set", "patch_size=12"], "session.nc"),
        (
            ["aggregate", "fit.nc", "--params-nc", "out/p.nc", "--params-tsv", "out/p.tsv"],
            "fit.nc",
        ),
        (["figures", "session", "fit.nc", "out/figs"], "fit.nc"),
        (["figures", "summary", "params.nc", "out/figs"], "params.nc"),
        (["export-nwb", "good.nwb", "fit.nc", "out/e.nwb"], "fit.nc"),
        (["export-nwb", "good.nwb", "fit.nc", "out/e.nwb"], "good.nwb"),
    ],
)
def test_bad_input_file(case, verb, target, kind):
    _damage(kind, case / target)
    proc = gazeem(*verb, cwd=case)
    assert_clean_failure(proc, target, DAMAGE_FIELD[kind])
    assert files_in(case / "out") == set()


def test_fit_on_an_nwb_file_given_by_mistake(case):
    proc = gazeem("fit", "good.nwb", "out/fit.nc", cwd=case)
    line = assert_clean_failure(proc, "good.nwb", "/")
    assert "NWB file" in line and "gazeem ingest" in line
    assert files_in(case / "out") == set()


# -- settings: the CLI validates exactly as the workflow's schema -------------------------


@pytest.mark.parametrize(
    "setting,field,says",
    [
        ("max_iter=-1", "fit.max_iter", "less than the minimum of 0"),
        ("max_iter=ten", "fit.max_iter", "'ten' is not of type 'integer'"),
        ("l2=-5", "fit.l2", "less than the minimum of 0"),
        ("smooth=-5", "fit.smooth", "less than the minimum of 0 (or one of cv)"),
        ("tol=-1", "fit.tol", "less than the minimum of 0"),
        ("prior=gaussian", "fit.prior", "is not one of"),
        ("device=tpu", "fit.device", "does not match"),
    ],
)
def test_fit_settings_are_checked_by_the_schema(case, setting, field, says):
    proc = gazeem("fit", "session.nc", "out/fit.nc", "--set", setting, cwd=case)
    line = assert_clean_failure(proc, f"--set {setting}", field)
    assert says in line
    assert files_in(case / "out") == set()


def test_settings_file_is_named(case):
    (case / "cfg.yaml").write_text("fit:\n  window_k: -3\n")
    proc = gazeem("fit", "session.nc", "out/fit.nc", "--config", "cfg.yaml", cwd=case)
    assert_clean_failure(proc, "cfg.yaml", "fit.window_k")


@pytest.mark.parametrize(
    "setting,field",
    [
        ("n_bins=-5", "simulate.n_bins"),
        ("n_bins=1e12", "n_bins"),
        ("stim_rows=0", "simulate.stim_rows"),
    ],
)
def test_simulate_refuses_negative_or_absurd_sizes(case, setting, field):
    proc = gazeem("simulate", "out/s.nwb", "--set", setting, cwd=case)
    line = assert_clean_failure(proc, "n_bins" if "n_bins" in setting else "stim_rows", field)
    if "1e12" in setting:
        assert "GiB" in line  # the memory it would need, and the limit
    assert files_in(case / "out") == set()


# -- ingest: sources that are malformed, or wrong in ways that were silent -----------------


def edit_h5(path: Path, fn) -> None:
    with h5py.File(path, "a") as f:
        fn(f)


def h5(fn):
    """An edit of the open HDF5 file, as an edit of the path."""
    return lambda path: edit_h5(path, fn)


def replace(f, name, data, **kw):
    attrs = dict(f[name].attrs)
    del f[name]
    f.create_dataset(name, data=data, **kw)
    f[name].attrs.update(attrs)


def corrupt_a_chunk(path: Path, dataset: str) -> None:
    """Overwrite the middle of a compressed chunk in the middle of ``dataset``."""
    with h5py.File(path, "r") as f:
        dsid = f[dataset].id
        info = dsid.get_chunk_info(dsid.get_num_chunks() // 2)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 4)
        fh.write(np.random.default_rng(0).bytes(max(16, info.size // 2)))


def nwb_eye_with_three_columns(f):
    name = "processing/behavior/EyeTracking/gaze/data"
    xy = f[name][()]
    replace(f, name, np.c_[xy, np.ones(len(xy))])


def nwb_stimulus_scaled(f):
    f["stimulus/presentation/noise/data"].attrs["conversion"] = 1e38


def nwb_conversion_nan(f):
    f["processing/behavior/EyeTracking/gaze/data"].attrs["conversion"] = np.nan


def nwb_stimulus_2d(f):
    name = "stimulus/presentation/noise/data"
    a = f[name][()]
    replace(f, name, a.reshape(len(a), -1))


def nwb_stimulus_nan(f):
    name = "stimulus/presentation/noise/data"
    a = f[name][()].astype(np.float32)
    a[7, 3, 3] = np.nan
    replace(f, name, a)


def nwb_one_frame(f):
    name = "stimulus/presentation/noise"
    replace(f, f"{name}/data", f[f"{name}/data"][:1])
    replace(f, f"{name}/timestamps", f[f"{name}/timestamps"][:1])


def h5_eye_as_strings(f):
    replace(f, "eye/xy", np.char.mod("%.3f", f["eye/xy"][()]).astype("S"))


def h5_ms_that_are_seconds(f):
    f["eye/t"].attrs["units"] = "ms"


def h5_nan_spike_times(f):
    t = f["spikes/times"][()]
    t[[3, 50]] = np.nan
    replace(f, "spikes/times", t)


def h5_float_unit_ids(f):
    u = f["spikes/unit"][()].astype(np.float64)
    u[10] += 0.5
    replace(f, "spikes/unit", u)


def h5_declares_billions_of_samples(f):
    for name in ("eye/t", "eye/xy", "eye/valid"):
        attrs = dict(f[name].attrs)
        shape = (2_000_000_000, 2) if name == "eye/xy" else (2_000_000_000,)
        dtype = bool if name == "eye/valid" else np.float64
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=True, compression="gzip")
        f[name].attrs.update(attrs)


INGEST_CASES = {
    # name: (source, edit, table extras, field, words in the message)
    "hdf5 eye trace stored as strings": ("good.h5", h5(h5_eye_as_strings), {}, "eye/xy", "dtype"),
    "hdf5 random bytes in a stimulus chunk": (
        "good.h5",
        lambda p: corrupt_a_chunk(p, "stimulus/frames"),
        {},
        "stimulus/frames",
        "corrupt",
    ),
    "nwb random bytes in a stimulus chunk": (
        "good.nwb",
        lambda p: corrupt_a_chunk(p, "stimulus/presentation/noise/data"),
        {},
        "stimulus/noise.data",
        "corrupt",
    ),
    "eye timestamps labelled ms that are seconds": (
        "good.h5",
        h5(h5_ms_that_are_seconds),
        {},
        "eye timestamps",
        "per second",
    ),
    "nwb eye series with three columns": (
        "good.nwb",
        h5(nwb_eye_with_three_columns),
        {},
        "processing/behavior/EyeTracking/gaze.data",
        "third column",
    ),
    "stimulus scaled by 1e38": (
        "good.nwb",
        h5(nwb_stimulus_scaled),
        {},
        "stimulus/noise.data",
        "conversion",
    ),
    "nan spike times": ("good.h5", h5(h5_nan_spike_times), {}, "units/spike_times (unit", "NaN"),
    "float unit ids": ("good.h5", h5(h5_float_unit_ids), {}, "spikes/unit", "whole numbers"),
    "hdf5 declaring 2e9 samples": (
        "good.h5",
        h5(h5_declares_billions_of_samples),
        {},
        "eye/t",
        "GiB",
    ),
    "bin_s of a microsecond": ("good.h5", None, {"bin_s": "1e-6"}, "bin_s", "sample period"),
    "nan in a stimulus frame names the source": (
        "good.nwb",
        h5(nwb_stimulus_nan),
        {},
        "stimulus/noise.data",
        "frame 7",
    ),
    "stimulus with one frame": ("good.nwb", h5(nwb_one_frame), {}, "bin_s", "single frame"),
    "nwb conversion is nan": (
        "good.nwb",
        h5(nwb_conversion_nan),
        {},
        "processing/behavior/EyeTracking/gaze.conversion",
        "finite",
    ),
    "2-d nwb stimulus": (
        "good.nwb",
        h5(nwb_stimulus_2d),
        {},
        "stimulus/presentation/noise",
        "shape",
    ),
}


def write_table(folder: Path, source: str, extra: dict) -> Path:
    fmt = "nwb" if source.endswith(".nwb") else "hdf5"
    cols = TABLE_HEADER.rstrip("\n").split("\t") + list(extra)
    row = [
        "s1",
        source,
        fmt,
        str(SIM["ppd"]),
        "2.0",
        "-1.0",
        "0",
        *extra.values(),
    ]
    (folder / "t.tsv").write_text("\t".join(cols) + "\n" + "\t".join(row) + "\n")
    return folder / "t.tsv"


@pytest.mark.parametrize("name", list(INGEST_CASES))
def test_ingest_refuses(case, name):
    source, edit, extra, field, words = INGEST_CASES[name]
    path = case / source
    if edit is not None:
        edit(path)
    write_table(case, source, extra)
    before = files_in(case)
    proc = gazeem("ingest", "out/s1.nc", "--sessions", "t.tsv", "--session", "s1", cwd=case)
    line = assert_clean_failure(proc, source, field)
    assert words in line, line
    assert files_in(case) == before  # no output, no temporary file


def test_ingest_of_a_one_frame_stimulus_with_bins_given(case):
    """The real cause was a missing bin_s: with it, a static image is a valid session."""
    edit_h5(case / "good.nwb", nwb_one_frame)
    write_table(case, "good.nwb", {"bin_s": str(SIM.get("bin_s", 1 / 60))})
    proc = gazeem("ingest", "out/s1.nc", "--sessions", "t.tsv", "--session", "s1", cwd=case)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with xr.open_dataset(case / "out" / "s1.nc", engine="h5netcdf") as ds:
        assert ds.sizes["frame"] == 1 and set(np.unique(ds["frame"].values)) <= {-1, 0}
        assert ds.sizes["time"] > 1000


@pytest.mark.parametrize(
    "rows,field,words",
    [
        ("s1\tgood.nwb\tnwb\t20\t2\t-1\t0\textra\n", None, "has 8 tab-separated fields"),
        ("..\tgood.nwb\tnwb\t20\t2\t-1\t0\n", "session", "does not match"),
        ("-rf\tgood.nwb\tnwb\t20\t2\t-1\t0\n", "session", "does not match"),
        (
            "s1\tgood.nwb\tnwb\t20\t2\t-1\t0\ns1\tgood.h5\thdf5\t20\t2\t-1\t0\n",
            "session",
            "appears twice",
        ),
    ],
)
def test_session_table_rows(case, rows, field, words):
    (case / "t.tsv").write_text(TABLE_HEADER + rows)
    proc = gazeem("ingest", "out/s1.nc", "--sessions", "t.tsv", "--session", "s1", cwd=case)
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    line = next(ln for ln in err.splitlines() if "gazeem ERROR:" in ln)
    assert "t.tsv row" in line and words in line, line
    if field:
        assert f"field '{field}'" in line
    else:  # a stray tab must not be blamed on the session field
        assert "field 'session'" not in line
    assert files_in(case / "out") == set()


# -- fit: sessions that cannot support the settings, and gains that are not a tracker's ----


def _write_session(case: Path, sim, edit) -> None:
    ds = sim.copy(deep=True)
    edit(ds)
    (case / "session.nc").unlink()
    write_netcdf_atomic(ds, case / "session.nc")


def only_ten_valid_bins(ds):
    valid = np.zeros(ds.sizes["time"], bool)
    keep = np.flatnonzero(ds["fixation"].values >= 0)[:10]
    valid[keep] = True
    ds["eye_valid"].values[:] = valid
    ds["eye"].values[~valid] = np.nan
    ds["fixation"].values[~valid] = -1


def y_flipped(ds):
    cy = ds.attrs["stim_center_y_deg"]
    ds["eye"].values[:, 1] = 2 * cy - ds["eye"].values[:, 1]


@pytest.mark.parametrize(
    "edit,settings,field,words",
    [
        (only_ten_valid_bins, [], "fixation", "only 10 of 1500 bins"),
        (None, ["patch_size=41"], "patch_size", "larger than the 40x40 px stimulus"),
        (None, ["n_lags=5000"], "n_lags", "the session has 1500"),
        (y_flipped, ["max_iter=15"], "gain", "y axis of the eye trace looks flipped"),
    ],
)
def test_fit_refuses(case, sim, edit, settings, field, words):
    if edit is not None:
        _write_session(case, sim, edit)
    sets = [a for s in ["patch_size=12", *settings] for a in ("--set", s)]
    proc = gazeem("fit", "session.nc", "out/fit.nc", *sets, "--device", "cpu", cwd=case)
    line = assert_clean_failure(proc, "session.nc", field)
    assert words in line, line
    assert files_in(case / "out") == set()


# -- outputs: permissions, stale temporaries, external links -------------------------------


def test_outputs_get_ordinary_permissions_and_stale_temporaries_go(case):
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has this id
    stale = case / "out" / f".fit.nc.{dead}.0badc0de.tmp.nc"
    stale.write_bytes(b"half a file")
    live = case / "out" / f".fit.nc.{os.getpid()}.0badc0de.tmp.nc"
    live.write_bytes(b"another writer")
    proc = gazeem(
        "fit",
        "session.nc",
        "out/fit.nc",
        "--set",
        "patch_size=12",
        "--set",
        "max_iter=1",
        cwd=case,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not stale.exists() and live.exists()  # a live writer's file is left alone
    mode = stat.S_IMODE((case / "out" / "fit.nc").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_export_refuses_external_links_and_never_writes_the_linked_file(case):
    linked = case / "linked.h5"
    with h5py.File(linked, "w") as f:
        f["data"] = np.zeros((10, 2))
    before = linked.read_bytes()
    with h5py.File(case / "good.nwb", "a") as f:
        f["acquisition/external_eye"] = h5py.ExternalLink("linked.h5", "/data")
    proc = gazeem("export-nwb", "good.nwb", "fit.nc", "out/e.nwb", cwd=case)
    line = assert_clean_failure(proc, "good.nwb", "/acquisition/external_eye")
    assert "external link" in line
    assert linked.read_bytes() == before
    assert files_in(case / "out") == set()
