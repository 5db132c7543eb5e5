"""Fields away from the gaze point: ingest checks the fields' region, not the gaze."""

import numpy as np
import pytest
import xarray as xr

from gazeem.errors import GazeemError
from gazeem.ingest import ingest_session
from gazeem.io.nwb import session_to_nwb
from gazeem.simulate import simulate_session

from .conftest import SIM, meta_for


@pytest.fixture(scope="module")
def parafoveal(tmp_path_factory):
    """Fields 60 px right and 40 px up of the gaze (3 and 2 deg at 20 px/deg): the
    stimulus lies over the fields, and the gaze mostly off it."""
    sim = simulate_session(seed=2, **{**SIM, "rf_offset_px": (60.0, -40.0)})
    return sim, session_to_nwb(sim, tmp_path_factory.mktemp("pf") / "pf.nwb")


def test_declared_region_is_ingested_and_carried(parafoveal, tmp_path):
    sim, path = parafoveal
    out = ingest_session(meta_for(path, "nwb", rf_x_deg=3.0, rf_y_deg=2.0), tmp_path / "s.nc")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert (ds.attrs["rf_x_deg"], ds.attrs["rf_y_deg"]) == (3.0, 2.0)
        np.testing.assert_allclose(ds["eye"].values, sim["eye"].values, atol=1e-9)
        # the gaze is mostly outside the 2 x 2 deg stimulus centred at (2, -1)
        off = np.abs(ds["eye"].values - [2.0, -1.0]) > 1.0
        assert np.nanmean(off.any(axis=1)) > 0.5


def test_undeclared_region_names_the_setting(parafoveal, tmp_path):
    _, path = parafoveal
    with pytest.raises(GazeemError, match=r"field 'ppd': .*receptive-field region.*rf_x_deg"):
        ingest_session(meta_for(path, "nwb"), tmp_path / "s.nc")
    assert not (tmp_path / "s.nc").exists()
