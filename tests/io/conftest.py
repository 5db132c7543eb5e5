"""Fixtures: a simulated session written to NWB and to plain HDF5."""

import pytest

from gazeem.io.hdf5 import session_to_hdf5
from gazeem.io.nwb import session_to_nwb
from gazeem.io.sessions import SessionMeta
from gazeem.simulate import simulate_session

SIM = dict(
    n_bins=1500,
    n_units=6,
    stim_rows=40,
    stim_cols=40,
    patch_size=12,
    gaze_range_px=12.0,
    n_calibration=9,
    ppd=20.0,
)


@pytest.fixture(scope="session")
def sim():
    return simulate_session(seed=2, **SIM)


def meta_for(path, fmt, **kw):
    base = dict(
        session="s1",
        path=str(path),
        format=fmt,
        ppd=20.0,
        stim_center_x_deg=2.0,
        stim_center_y_deg=-1.0,
    )
    return SessionMeta(**{**base, **kw})


@pytest.fixture(scope="session")
def nwb_file(sim, tmp_path_factory):
    return session_to_nwb(sim, tmp_path_factory.mktemp("nwb") / "s1.nwb", eye_samples_per_bin=4)


@pytest.fixture(scope="session")
def h5_file(sim, tmp_path_factory):
    return session_to_hdf5(sim, tmp_path_factory.mktemp("h5") / "s1.h5", eye_samples_per_bin=4)
