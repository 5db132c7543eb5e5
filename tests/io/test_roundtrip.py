"""Simulated sessions written to NWB / plain HDF5 and ingested give the simulator's arrays back."""

import hashlib
import warnings

import numpy as np
import pytest
import xarray as xr

from gazeem.gaze.estimator import GazeEM
from gazeem.ingest import ingest_session
from gazeem.io.dataset import validate_session

from .conftest import meta_for


def fixation_spans(fix):
    ids = np.unique(fix[fix >= 0])
    return {i: (np.flatnonzero(fix == i)[0], np.flatnonzero(fix == i)[-1]) for i in ids}


def assert_same_as_simulator(out, sim):
    np.testing.assert_array_equal(out["counts"].values, sim["counts"].values)
    np.testing.assert_allclose(out["eye"].values, sim["eye"].values, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out["eye_valid"].values, sim["eye_valid"].values)
    np.testing.assert_array_equal(out["frame"].values, sim["frame"].values)
    np.testing.assert_array_equal(out["stimulus"].values, sim["stimulus"].values)
    np.testing.assert_allclose(out["time"].values, sim["time"].values, atol=1e-9)
    np.testing.assert_array_equal(out["calib_target"].values, sim["calib_target"].values)
    np.testing.assert_allclose(out["true_gaze"].values, sim["true_gaze"].values, rtol=0, atol=1e-9)
    # fixations: each true fixation between saccades of >= 0.5 deg is found to within one bin
    true = fixation_spans(sim["fixation"].values)
    found = np.array(list(fixation_spans(out["fixation"].values).values()))
    gaze = sim["true_gaze"].values
    checked = hits = 0
    spans = sorted(true.values())
    for k in range(1, len(spans) - 1):
        a, b = spans[k]
        before = np.linalg.norm(gaze[a] - gaze[spans[k - 1][1]])
        after = np.linalg.norm(gaze[spans[k + 1][0]] - gaze[b])
        if min(before, after) < 0.5:
            continue
        checked += 1
        hits += bool(np.any((np.abs(found[:, 0] - a) <= 1) & (np.abs(found[:, 1] - b) <= 1)))
    assert checked > 30
    assert hits / checked > 0.95, (hits, checked)


@pytest.mark.parametrize("fmt", ["nwb", "hdf5"])
def test_round_trip(fmt, sim, nwb_file, h5_file, tmp_path):
    src = nwb_file if fmt == "nwb" else h5_file
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out_path = ingest_session(meta_for(src, fmt), tmp_path / "s1.nc")
    out = validate_session(xr.open_dataset(out_path, engine="h5netcdf"))
    assert_same_as_simulator(out, sim)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    for attr in ("title", "source", "history", "Conventions", "gazeem_version"):
        assert attr in out.attrs
    assert out["eye"].attrs["units"] == "degree" and out["time"].attrs["units"] == "s"
    # chunked for reading a few bins at a time, and compressed
    assert out["counts"].encoding["chunksizes"][1] == 6 and out["counts"].encoding["zlib"]
    assert out["stimulus"].encoding["chunksizes"][0] <= 64


def test_response_lag_pairs_later_counts_with_the_stimulus(sim, nwb_file, tmp_path):
    out = xr.open_dataset(
        ingest_session(meta_for(nwb_file, "nwb", lag_bins=3), tmp_path / "lag.nc"),
        engine="h5netcdf",
    )
    assert out.sizes["time"] == sim.sizes["time"] - 3
    np.testing.assert_array_equal(out["counts"].values, sim["counts"].values[3:])
    np.testing.assert_array_equal(out["frame"].values, sim["frame"].values[:-3])
    assert out.attrs["lag_bins"] == 3


def test_fixed_bin_width(sim, h5_file, tmp_path):
    bin_s = 2 * sim.attrs["bin_s"]
    out = xr.open_dataset(
        ingest_session(meta_for(h5_file, "hdf5", bin_s=bin_s), tmp_path / "b.nc"), engine="h5netcdf"
    )
    assert out.sizes["time"] == sim.sizes["time"] // 2
    np.testing.assert_array_equal(
        out["counts"].values, sim["counts"].values.reshape(-1, 2, 6).sum(1)
    )


def test_nwb_from_the_simulator_passes_pynwb_and_nwbinspector(nwb_file):
    from nwbinspector import Importance, inspect_nwbfile
    from pynwb import NWBHDF5IO, validate

    with NWBHDF5IO(str(nwb_file), "r") as io:
        assert validate(io=io) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        messages = list(inspect_nwbfile(nwbfile_path=str(nwb_file)))
    critical = [
        m for m in messages if m.importance in (Importance.CRITICAL, Importance.PYNWB_VALIDATION)
    ]
    assert critical == [], [m.message for m in critical]


def test_export_round_trip(nwb_file, tmp_path):
    from pynwb import NWBHDF5IO

    from gazeem.export import export_nwb

    session = ingest_session(meta_for(nwb_file, "nwb"), tmp_path / "s.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_dataset(session, engine="h5netcdf").load()
        est = GazeEM(patch_size=12, max_iter=2, window_k=3.0, device="cpu").fit(ds)
    fit_path = tmp_path / "fit.nc"
    result = est.to_dataset(ds)
    result.to_netcdf(fit_path, engine="h5netcdf")
    before = hashlib.sha256(nwb_file.read_bytes()).hexdigest()
    out = export_nwb(nwb_file, fit_path, tmp_path / "exported.nwb")
    assert hashlib.sha256(nwb_file.read_bytes()).hexdigest() == before
    with NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        et = nwb.processing["behavior"]["EyeTrackingCorrected"]
        gaze = et.spatial_series["corrected_gaze"]
        sd = et.spatial_series["posterior_sd"]
        np.testing.assert_array_equal(gaze.data[:], result["gaze_mean"].values)
        np.testing.assert_array_equal(sd.data[:], result["gaze_sd"].values)
        # issue 14: the credible intervals travel too, each level's ends around the mean
        for i, level in enumerate((68, 95)):
            lo = et.spatial_series[f"credible_lower_{level}"].data[:]
            hi = et.spatial_series[f"credible_upper_{level}"].data[:]
            np.testing.assert_array_equal(lo, result["gaze_lower"].values[..., i])
            np.testing.assert_array_equal(hi, result["gaze_upper"].values[..., i])
            ok = np.isfinite(lo)  # a calibration fixation's gaze is its target: a point
            assert (lo[ok] <= hi[ok]).all() and (lo[ok] < hi[ok]).mean() > 0.5
        np.testing.assert_array_equal(
            gaze.timestamps[:], xr.open_dataset(session, engine="h5netcdf")["time"].values
        )
        assert gaze.unit == "degrees"
        # the original eye trace is still there, untouched
        assert "EyeTracking" in nwb.processing["behavior"].data_interfaces
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
