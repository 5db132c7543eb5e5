"""``gazeem locate-fields``: where the fields sit relative to the tracker's reading."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from gazeem.coords import StimulusGeometry
from gazeem.errors import GazeemError
from gazeem.locate import LocateSettings, locate_fields
from tests.conftest import make_session

IDENTITY = ((1.0, 0.0), (0.0, 1.0))
#: parafoveal: fields 3 deg right of and 2 deg above the gaze at 20 px/deg, a tracker
#: offset of (4, -3) px; the stimulus lies over the fields, the gaze mostly off it
KW = dict(
    n_bins=3000,
    n_units=16,
    rf_offset_px=(60.0, -40.0),
    ppd=20.0,
    tracker_offset_px=(4.0, -3.0),
    tracker_gain=IDENTITY,
    tracker_sigma_px=3.0,
    stim_rows=48,
    stim_cols=48,
    gaze_range_px=10.0,
)


def true_centres_px(sim: xr.Dataset) -> np.ndarray:
    """``(N, 2)`` each unit's field centre relative to the tracker's reading, px (y down).

    The field's energy centroid in its patch, moved to the patch's place (gaze + offset),
    minus the reading, averaged over the bins inside fixations.
    """
    geom = StimulusGeometry.from_dataset(sim)
    fix = sim["fixation"].values >= 0
    gaze = geom.deg_to_px(sim["true_gaze"].values)[fix]
    reading = geom.deg_to_px(sim["eye"].values)[fix]
    rf_to_reading = np.nanmean(np.rint(gaze + KW["rf_offset_px"]) - reading, axis=0)
    e = (sim["true_rf"].values ** 2).sum(1)
    p = e.shape[-1]
    d = np.arange(p) - p // 2
    cx = (e.sum(1) * d).sum(1) / e.sum((1, 2))
    cy = (e.sum(2) * d).sum(1) / e.sum((1, 2))
    return np.c_[cx, cy] + rf_to_reading


@pytest.fixture(scope="module")
def parafoveal():
    sim = make_session("small", seed=4, **KW)
    return sim, locate_fields(sim)


def test_population_centre_within_a_pixel(parafoveal):
    sim, loc = parafoveal
    truth = true_centres_px(sim)
    ppd = KW["ppd"]
    # the population centre is the median of the located units' centres
    want = np.median(truth[loc["located"].values], axis=0)
    got = np.array([loc.attrs["population_x_deg"], -loc.attrs["population_y_deg"]]) * ppd
    # blocks of 3 px, fields of 2-3 px, tracker error 3 px per fixation: 1 px is a third
    # of a block; the reading's offset (4, -3) px is inside the answer by design
    np.testing.assert_allclose(got, want, atol=1.0)
    assert loc.attrs["n_located"] >= 12
    # per unit, the precision follows the unit's SNR: clear fields within 2.5 px, every
    # located one within 1.5 blocks (4.5 px), half of them within 1.5 px
    c = loc["center_deg"].values * [ppd, -ppd]
    err = np.abs(c - truth).max(1)
    located, snr = loc["located"].values, loc["snr"].values
    assert err[located].max() < 4.5 and np.median(err[located]) < 1.5, (err, snr)
    assert err[snr >= 15].max() < 2.5, (err, snr)


def test_suggested_patch_covers_the_fields(parafoveal):
    _, loc = parafoveal
    # fields of SD 2-3 px spread 2 px about the region: 12-40 px covers them, not a screen
    assert 12 <= loc.attrs["suggested_patch_px"] <= 40


def test_no_field_is_found_in_shuffled_counts():
    """Counts that do not follow the stimulus locate nothing: no invented region."""
    sim = make_session("small", seed=4, **KW)
    rng = np.random.default_rng(0)
    sim["counts"].values[:] = sim["counts"].values[rng.permutation(sim.sizes["time"])]
    loc = locate_fields(sim)
    assert loc.attrs["n_located"] == 0
    assert np.isnan(loc.attrs["population_x_deg"])


def test_bad_settings_name_the_field():
    sim = make_session("tiny", seed=1)
    with pytest.raises(GazeemError, match="locate settings"):
        locate_fields(sim, LocateSettings(radius_deg=-1.0))


def test_cli_writes_the_result_and_the_figure(parafoveal, tmp_path):
    sim, _ = parafoveal
    session = tmp_path / "s.nc"
    sim.drop_vars(["true_gaze", "true_rf", "true_bias"]).to_netcdf(session, engine="h5netcdf")
    out = tmp_path / "loc.nc"
    run = [sys.executable, "-m", "gazeem.cli"]
    r = subprocess.run(
        [*run, "locate-fields", str(session), str(out), "--set", "radius_deg=4"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "suggested patch_size" in r.stderr
    with xr.open_dataset(out, engine="h5netcdf") as loc:
        assert loc.attrs["population_x_deg"] == pytest.approx(2.8, abs=0.1)
        assert loc.attrs["population_y_deg"] == pytest.approx(1.85, abs=0.1)
    r = subprocess.run(
        [*run, "figures", "fields", str(out), str(tmp_path / "f")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f" / "fields_location.png").stat().st_size > 10_000
    r = subprocess.run(
        [*run, "locate-fields", str(session), str(out), "--set", "min_snr=-2"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "locate.min_snr" in r.stderr
