"""Tracker conventions: the y direction and the pixel origin come from the session table,
and an NWB ``reference_frame`` that contradicts the table stops ingest."""

import shutil

import h5py
import numpy as np
import pytest
import xarray as xr

from gazeem.errors import GazeemError
from gazeem.ingest import ingest_session

from .conftest import meta_for

GAZE = "processing/behavior/EyeTracking/gaze"


@pytest.fixture
def y_down_nwb(nwb_file, tmp_path):
    """The same recording with its eye trace written y down, and a frame that says so."""
    path = tmp_path / "down.nwb"
    shutil.copy(nwb_file, path)
    with h5py.File(path, "a") as f:
        xy = f[f"{GAZE}/data"][()]
        xy[:, 1] = -xy[:, 1]
        f[f"{GAZE}/data"][...] = xy
        del f[f"{GAZE}/reference_frame"]
        f[f"{GAZE}/reference_frame"] = "screen centre; x right, y down"
    return path


def eye_of(path):
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds["eye"].values, ds["fixation"].values


def test_y_down_with_the_table_saying_so_equals_y_up(nwb_file, y_down_nwb, tmp_path):
    up = ingest_session(meta_for(nwb_file, "nwb"), tmp_path / "up.nc")
    down = ingest_session(meta_for(y_down_nwb, "nwb", eye_y_direction="down"), tmp_path / "down.nc")
    (eu, fu), (ed, fd) = eye_of(up), eye_of(down)
    np.testing.assert_array_equal(ed, eu)  # negation is exact: the same session, bit for bit
    np.testing.assert_array_equal(fd, fu)


def test_y_down_frame_with_the_table_silent_stops(y_down_nwb, tmp_path):
    with pytest.raises(
        GazeemError, match=r"field '.*gaze\.reference_frame': says y down.*no eye_y_direction"
    ):
        ingest_session(meta_for(y_down_nwb, "nwb"), tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()


def test_table_contradicting_the_frame_stops(nwb_file, tmp_path):
    with pytest.raises(GazeemError, match=r"says y up .*eye_y_direction=down"):
        ingest_session(meta_for(nwb_file, "nwb", eye_y_direction="down"), tmp_path / "x.nc")


@pytest.mark.parametrize(
    "origin,y_dir,to_px",
    [
        # EyeLink: pixels from the top-left corner, y down (the default for pixels)
        ("top-left", None, lambda x, y, w, h, p: (x * p + w / 2, -y * p + h / 2)),
        # PsychoPy 'pix': from the screen centre, y up
        ("center", "up", lambda x, y, w, h, p: (x * p, y * p)),
        # from the bottom-left corner, y up
        ("bottom-left", "up", lambda x, y, w, h, p: (x * p + w / 2, y * p + h / 2)),
    ],
)
def test_pixel_traces_from_any_origin(h5_file, sim, tmp_path, origin, y_dir, to_px):
    ppd, w, h = 30.0, 1920, 1080
    path = tmp_path / "px.h5"
    shutil.copy(h5_file, path)
    with h5py.File(path, "a") as f:
        xy = f["eye/xy"][()]
        px = np.c_[to_px(xy[:, 0], xy[:, 1], w, h, ppd)]
        del f["eye/xy"]
        f["eye/xy"] = px
        f["eye/xy"].attrs["units"] = "pixels"
    meta = meta_for(
        path,
        "hdf5",
        screen_ppd=ppd,
        screen_width_px=w,
        screen_height_px=h,
        eye_origin=origin,
        eye_y_direction=y_dir,
    )
    eye, _ = eye_of(ingest_session(meta, tmp_path / "px.nc"))
    np.testing.assert_allclose(eye, sim["eye"].values, atol=1e-9)
