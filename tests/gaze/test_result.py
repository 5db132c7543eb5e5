"""The fit result dataset and the command line."""

import numpy as np
import pytest
import xarray as xr
import yaml

from gazeem import __version__
from gazeem.cli import main
from gazeem.coords import StimulusGeometry
from gazeem.gaze.estimator import GazeEM
from gazeem.io.dataset import write_netcdf_atomic

FIT = dict(patch_size=12, max_iter=3, window_k=3.0, device="cpu")


@pytest.fixture(scope="module")
def fitted():
    from tests.conftest import make_session

    ds = make_session("small", seed=7)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GazeEM(**FIT).fit(ds)
    return ds, est, est.to_dataset(ds)


def test_per_bin_values_are_the_fixation_posteriors(fitted):
    """A bin carries its fixation's posterior plus the tracker's motion within the
    fixation (gazeem.gaze.posterior.within_fixation_motion): averaged over the
    fixation's bins that motion is zero, and its residual widens every bin's SD alike."""
    ds, est, out = fitted
    summ = est.fixation_summary()
    fix = est.fit_.fixation_of_bin
    geom = StimulusGeometry.from_dataset(ds)
    moved = 0
    for f in (0, 3, 7):
        bins = np.flatnonzero(fix == f)
        per_bin = out["gaze_mean_px"].values[bins]
        np.testing.assert_allclose(per_bin.mean(0), summ["mean"][f], atol=1e-9)
        # the motion follows the reading's deviation from its fixation mean, scaled by w
        reading = geom.deg_to_px(ds["eye"].values[bins])
        dev, motion = reading - reading.mean(0), per_bin - summ["mean"][f]
        w = float((dev * motion).sum() / (dev**2).sum())
        assert 0 <= w <= 1
        np.testing.assert_allclose(motion, w * dev, atol=1e-6 + 0.02 * np.abs(dev).max())
        moved += np.abs(motion).max() > 0
        sd = out["gaze_sd"].values[bins] * geom.ppd
        assert (sd >= summ["sd"][f] - 1e-9).all() and np.ptp(sd, axis=0).max() < 1e-9
    assert moved  # the simulated drift is followed
    assert np.isnan(out["gaze_mean"].values[fix < 0]).all()
    np.testing.assert_allclose(
        out["correction"].values, out["gaze_mean"].values - ds["eye"].values, equal_nan=True
    )


def test_parameters_units_and_provenance(fitted):
    ds, est, out = fitted
    assert out["sigma"].attrs["units"] == "degree"
    assert float(out["sigma"]) == pytest.approx(est.sigma_ / ds.attrs["ppd"])
    np.testing.assert_array_equal(out["rf"].values, est.rf_.astype(np.float32))
    assert out["rf"].dims == ("unit", "lag", "rf_row", "rf_col")
    assert out["loglik"].sizes["iteration"] == est.n_iter_ + 1
    assert out.attrs["gazeem_version"] == __version__
    cfg = yaml.safe_load(out.attrs["config"])
    assert cfg["patch_size"] == 12 and cfg["max_iter"] == 3


def test_netcdf_round_trip_is_atomic(fitted, tmp_path):
    _, _, out = fitted
    path = write_netcdf_atomic(out, tmp_path / "fit.nc")
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]
    back = xr.open_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(back["gaze_mean"].values, out["gaze_mean"].values)
    assert back.attrs["config"] == out.attrs["config"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    bad = xr.Dataset({"x": ("t", np.array([object(), object()]))})
    with pytest.raises((TypeError, ValueError)):
        write_netcdf_atomic(bad, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []


def test_cli_simulate_then_fit(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "simulate": {
                    "n_bins": 600,
                    "stim_rows": 32,
                    "stim_cols": 32,
                    "n_units": 4,
                    "patch_size": 10,
                    "gaze_range_px": 6.0,
                },
                "fit": {"patch_size": 10, "max_iter": 2, "window_k": 3.0, "dtype": "float64"},
            }
        )
    )
    sess, fit = tmp_path / "s1.nc", tmp_path / "f1.nc"
    assert main(["simulate", str(sess), "--config", str(cfg), "--seed", "4"]) == 0
    assert (
        main(
            ["fit", str(sess), str(fit), "--config", str(cfg), "--set", "tol=0", "--device", "cpu"]
        )
        == 0
    )
    out = xr.open_dataset(fit, engine="h5netcdf")
    assert out.sizes["iteration"] == 3
    assert yaml.safe_load(out.attrs["config"])["dtype"] == "float64"
    # the same config and seed give the same numbers
    fit2 = tmp_path / "f2.nc"
    assert (
        main(
            ["fit", str(sess), str(fit2), "--config", str(cfg), "--set", "tol=0", "--device", "cpu"]
        )
        == 0
    )
    np.testing.assert_array_equal(
        xr.open_dataset(fit2, engine="h5netcdf")["loglik"].values, out["loglik"].values
    )


def test_cli_rejects_unknown_keys(tmp_path, caplog):
    sess = tmp_path / "s.nc"
    assert main(["fit", str(sess), str(tmp_path / "f.nc"), "--set", "windw_k=3"]) == 2
    assert "unknown key(s) ['windw_k']" in caplog.text


def test_gaze_change_is_how_far_the_posterior_means_moved():
    """The trace's gaze change at iteration 3 is the move of every fixation's posterior
    mean between a 2- and a 3-iteration fit (EM is deterministic)."""
    import warnings

    from tests.conftest import make_session

    ds = make_session("small", seed=7)
    means, fits = [], []
    for n in (2, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = GazeEM(**{**FIT, "max_iter": n, "tol": 0.0, "heldout_check": False}).fit(ds)
        post = est.posterior_
        q = post.log_q.exp().double()
        means.append(np.einsum("fk,fki->fi", q.numpy(), post.windows.cells.double().numpy()))
        fits.append(est)
    moved = np.linalg.norm(means[1] - means[0], axis=1)
    change = fits[1].fit_.gaze_change
    assert change.shape == (4, 2) and np.isnan(change[0]).all()
    assert change[3, 0] == pytest.approx(np.sqrt(np.mean(moved**2)), rel=1e-9, abs=1e-12)
    assert change[3, 1] == pytest.approx(moved.max(), rel=1e-9, abs=1e-12)
    assert moved.max() > 0  # the test compares a real move
    np.testing.assert_allclose(fits[1].to_dataset(ds)["gaze_change_rms_px"], change[:, 0])


def test_gaze_tol_stops_em_at_the_second_small_move_in_a_row():
    """With ``tol = 0`` only the answer can end EM: the fit stops at the first iteration
    whose move and the previous one are both below ``gaze_tol``, found in the trace of a
    longer fit (EM is deterministic), and records that it stopped on the gaze."""
    import warnings

    from tests.conftest import make_session

    ds = make_session("small", seed=7)
    fit = {**FIT, "tol": 0.0, "gaze_tol": 0.0, "heldout_check": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        long = GazeEM(**{**fit, "max_iter": 8}).fit(ds)
    rms = long.fit_.gaze_change[:, 0]
    gaze_tol = 1.001 * float(max(rms[4], rms[5]))
    first = next(k for k in range(2, 9) if max(rms[k - 1], rms[k]) < gaze_tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GazeEM(**{**fit, "max_iter": 50, "gaze_tol": gaze_tol}).fit(ds)
    assert est.converged_ and est.state_.settled and est.n_iter_ == first <= 5
    np.testing.assert_array_equal(est.loglik_, long.loglik_[: first + 1])
    assert est.to_dataset(ds).attrs["converged_on_gaze"] == 1
    assert long.to_dataset(ds).attrs["converged_on_gaze"] == 0
