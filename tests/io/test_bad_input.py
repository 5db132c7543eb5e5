"""Each bad input gets one clear error naming the file and the field, and leaves no output."""

import shutil

import h5py
import numpy as np
import pytest

from gazeem.errors import GazeemError
from gazeem.ingest import IngestSettings, ingest_session
from gazeem.io.nwb import session_to_nwb
from gazeem.io.sessions import read_sessions

from .conftest import meta_for


@pytest.fixture
def h5(h5_file, tmp_path):
    path = tmp_path / "in" / "s1.h5"
    path.parent.mkdir()
    shutil.copy(h5_file, path)
    return path


def edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def replace(f, name, data):
    attrs = dict(f[name].attrs)
    del f[name]
    f.create_dataset(name, data=data)
    f[name].attrs.update(attrs)


def ingest_fails(path, fmt, match, tmp_path, settings=None, **meta):
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    with pytest.raises(GazeemError, match=match) as err:
        ingest_session(meta_for(path, fmt, **meta), out_dir / "s1.nc", settings)
    assert str(path) in str(err.value)  # names the file
    assert list(out_dir.iterdir()) == []  # no partial output
    return err.value


class TestHDF5:
    def test_missing_field(self, h5, tmp_path):
        edit(h5, lambda f: f.__delitem__("spikes/unit"))
        ingest_fails(h5, "hdf5", r"field 'spikes/unit': missing", tmp_path)

    def test_missing_group(self, h5, tmp_path):
        edit(h5, lambda f: f.__delitem__("stimulus"))
        ingest_fails(h5, "hdf5", r"field 'stimulus/frames': missing", tmp_path)

    def test_unsorted_timestamps(self, h5, tmp_path):
        def swap(f):
            t = f["eye/t"][()]
            t[[10, 11]] = t[[11, 10]]
            replace(f, "eye/t", t)

        edit(h5, swap)
        ingest_fails(
            h5, "hdf5", r"field 'eye timestamps': unsorted timestamps at index 11", tmp_path
        )

    def test_duplicate_timestamps(self, h5, tmp_path):
        def dup(f):
            t = f["stimulus/t"][()]
            t[5] = t[4]
            replace(f, "stimulus/t", t)

        edit(h5, dup)
        ingest_fails(
            h5, "hdf5", r"field 'stimulus timestamps': duplicate timestamps at index 5", tmp_path
        )

    def test_gap_in_the_eye_clock(self, h5, tmp_path):
        def gap(f):
            t, xy, v = f["eye/t"][()], f["eye/xy"][()], f["eye/valid"][()]
            keep = (t < 5.0) | (t > 6.0)
            replace(f, "eye/t", t[keep])
            replace(f, "eye/xy", xy[keep])
            replace(f, "eye/valid", v[keep])

        edit(h5, gap)
        ingest_fails(
            h5,
            "hdf5",
            r"field 'eye timestamps': gap of 1\.0\d* s in the eye clock at 4\.99",
            tmp_path,
        )

    def test_eye_in_meters_without_a_conversion(self, h5, tmp_path):
        edit(h5, lambda f: f["eye/xy"].attrs.__setitem__("units", "meters"))
        ingest_fails(
            h5,
            "hdf5",
            r"field 'eye/xy@units': the eye trace is in meters.*viewing_distance_m",
            tmp_path,
        )

    def test_eye_in_meters_with_a_viewing_distance(self, h5, sim, tmp_path):
        d = 0.57
        edit(
            h5,
            lambda f: (
                replace(f, "eye/xy", np.tan(np.radians(f["eye/xy"][()])) * d),
                f["eye/xy"].attrs.__setitem__("units", "meters"),
            ),
        )
        import xarray as xr

        out = ingest_session(meta_for(h5, "hdf5", viewing_distance_m=d), tmp_path / "m.nc")
        np.testing.assert_allclose(
            xr.open_dataset(out, engine="h5netcdf")["eye"].values, sim["eye"].values, atol=1e-9
        )

    def test_eye_in_screen_pixels(self, h5, sim, tmp_path):
        ppd, w, h = 30.0, 1920, 1080

        def to_px(f):
            xy = f["eye/xy"][()]
            replace(f, "eye/xy", np.c_[xy[:, 0] * ppd + w / 2, -xy[:, 1] * ppd + h / 2])
            f["eye/xy"].attrs["units"] = "pixels"

        edit(h5, to_px)
        ingest_fails(h5, "hdf5", r"eye trace is in pixels; give screen_ppd", tmp_path)
        import xarray as xr

        out = ingest_session(
            meta_for(h5, "hdf5", screen_ppd=ppd, screen_width_px=w, screen_height_px=h),
            tmp_path / "p.nc",
        )
        np.testing.assert_allclose(
            xr.open_dataset(out, engine="h5netcdf")["eye"].values, sim["eye"].values, atol=1e-9
        )

    def test_zero_units(self, h5, tmp_path):
        edit(
            h5,
            lambda f: (
                replace(f, "spikes/times", np.zeros(0)),
                replace(f, "spikes/unit", np.zeros(0, int)),
            ),
        )
        ingest_fails(h5, "hdf5", r"field 'spikes/unit': the file has zero units", tmp_path)

    def test_spikes_outside_the_recording(self, h5, tmp_path):
        def late(f):
            t, u = f["spikes/times"][()], f["spikes/unit"][()]
            t[np.flatnonzero(u == 3)[0]] = 5000.0
            replace(f, "spikes/times", t)

        edit(h5, late)
        ingest_fails(
            h5,
            "hdf5",
            r"field 'units/spike_times \(unit 3\)': spikes from .* lie outside the recording",
            tmp_path,
        )

    def test_clocks_that_do_not_overlap(self, h5, tmp_path):
        edit(h5, lambda f: replace(f, "stimulus/t", f["stimulus/t"][()] + 1000.0))
        ingest_fails(h5, "hdf5", r"the stimulus clock \(1000\.000.*do not overlap", tmp_path)

    def test_wrong_ppd(self, h5, tmp_path):
        # at ppd=200 the 40-px stimulus is 0.2 deg wide, but the gaze wanders over ±0.6 deg
        settings = IngestSettings(gaze_margin_deg=0.2)
        msg = r"field 'ppd': \d+% of valid gaze samples lie more than 0\.2 deg outside.*check ppd"
        ingest_fails(h5, "hdf5", msg, tmp_path, settings, ppd=200.0)
        ingest_session(meta_for(h5, "hdf5"), tmp_path / "ok.nc", settings)  # the right ppd passes

    def test_truncated_file(self, h5, tmp_path):
        data = h5.read_bytes()
        h5.write_bytes(data[: len(data) // 3])
        ingest_fails(h5, "hdf5", r"(not a readable HDF5 file|cannot be read)", tmp_path)

    def test_corrupt_file(self, h5, tmp_path):
        h5.write_bytes(b"\x89HDF\r\n" + np.random.default_rng(0).bytes(4096))
        ingest_fails(h5, "hdf5", r"not a readable HDF5 file", tmp_path)


class TestNWB:
    def test_eye_in_meters_without_a_conversion(self, sim, tmp_path):
        path = session_to_nwb(sim, tmp_path / "in" / "m.nwb", eye_unit="meters")
        ingest_fails(
            path,
            "nwb",
            r"field 'processing/behavior/EyeTracking/gaze\.unit': the eye trace is in meters",
            tmp_path,
        )

    def test_missing_eye_tracking(self, nwb_file, tmp_path):
        from pynwb import NWBHDF5IO

        path = tmp_path / "in" / "noeye.nwb"
        path.parent.mkdir()
        shutil.copy(nwb_file, path)
        with h5py.File(path, "a") as f:
            del f["processing/behavior/EyeTracking"]
        with NWBHDF5IO(str(path), "r"):
            pass
        ingest_fails(
            path,
            "nwb",
            r"field 'processing/behavior': no EyeTracking SpatialSeries found",
            tmp_path,
        )

    def test_corrupt_file(self, tmp_path):
        path = tmp_path / "in" / "bad.nwb"
        path.parent.mkdir()
        path.write_bytes(b"not an nwb file at all")
        ingest_fails(path, "nwb", r"field '/': not a readable NWB file", tmp_path)

    def test_missing_file(self, tmp_path):
        ingest_fails(tmp_path / "nope.nwb", "nwb", r"field 'path': no such file", tmp_path)


class TestSessionTable:
    HEADER = "session\tpath\tformat\tppd\tlag_bins\n"

    def write(self, tmp_path, text):
        p = tmp_path / "sessions.tsv"
        p.write_text(text)
        return p

    def test_valid_table_fills_defaults(self, tmp_path):
        table = read_sessions(
            self.write(tmp_path, self.HEADER + "a\tx.nwb\tnwb\t20\t\nb\ty.h5\thdf5\t15.5\t2\n")
        )
        assert table["a"].lag_bins == 0 and table["b"].lag_bins == 2 and table["a"].bin_s is None
        assert table["b"].ppd == 15.5 and table["a"].stim_center_x_deg == 0.0

    @pytest.mark.parametrize(
        "row,match",
        [
            ("a\tx.nwb\tnwb\ttwenty\t0\n", r"row 2: field 'ppd': 'twenty' is not of type 'number'"),
            (
                "a\tx.nwb\tzarr\t20\t0\n",
                r"row 2: field 'format': 'zarr' is not one of \['nwb', 'hdf5'\]",
            ),
            (
                "a\tx.nwb\tnwb\t-3\t0\n",
                r"row 2: field 'ppd': -3 is less than or equal to the minimum of 0",
            ),
            ("a\tx.nwb\tnwb\t20\t1.5\n", r"row 2: field 'lag_bins': 1.5 is not of type 'integer'"),
            ("a b\tx.nwb\tnwb\t20\t0\n", r"row 2: field 'session': 'a b' does not match"),
        ],
    )
    def test_bad_rows(self, tmp_path, row, match):
        with pytest.raises(GazeemError, match=match):
            read_sessions(self.write(tmp_path, self.HEADER + row))

    def test_unknown_column(self, tmp_path):
        with pytest.raises(GazeemError, match=r"field 'colour'"):
            read_sessions(
                self.write(tmp_path, "session\tpath\tformat\tppd\tcolour\na\tx\tnwb\t20\tred\n")
            )

    def test_missing_column(self, tmp_path):
        with pytest.raises(GazeemError, match=r"field 'ppd': 'ppd' is a required property"):
            read_sessions(self.write(tmp_path, "session\tpath\tformat\na\tx\tnwb\n"))

    def test_duplicate_session(self, tmp_path):
        with pytest.raises(GazeemError, match=r"row 3: field 'session': 'a' appears twice"):
            read_sessions(
                self.write(tmp_path, self.HEADER + "a\tx\tnwb\t20\t0\na\ty\tnwb\t20\t0\n")
            )
