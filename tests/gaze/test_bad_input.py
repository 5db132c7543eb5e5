"""Each bad input raises one clear error that names the problem."""

import numpy as np
import pytest
import torch

from gazeem.coords import StimulusGeometry
from gazeem.errors import GazeemError, SessionValidationError
from gazeem.gaze.data import GazeData
from gazeem.gaze.estimator import GazeEM

FAST = dict(patch_size=4, n_lags=2, max_iter=1, window_max=3)


def arrays(ds):
    return dict(
        frames=torch.as_tensor(ds["stimulus"].values),
        frame=ds["frame"].values,
        counts=ds["counts"].values,
        eye_deg=ds["eye"].values,
        fixation=ds["fixation"].values,
        geometry=StimulusGeometry.from_dataset(ds),
        device=torch.device("cpu"),
        dtype=torch.float64,
    )


class TestArrays:
    def test_shapes_that_disagree(self, tiny_session):
        a = arrays(tiny_session)
        a["counts"] = a["counts"][:-3]
        with pytest.raises(GazeemError, match=r"counts: shape \(37, 2\) disagrees"):
            GazeData.from_arrays(**a)

    def test_eye_shape(self, tiny_session):
        a = arrays(tiny_session)
        a["eye_deg"] = a["eye_deg"][:, :1]
        with pytest.raises(GazeemError, match=r"eye: shape \(40, 1\)"):
            GazeData.from_arrays(**a)

    def test_negative_counts(self, tiny_session):
        a = arrays(tiny_session)
        a["counts"] = a["counts"].copy()
        a["counts"][3, 1] = -2
        with pytest.raises(GazeemError, match="cannot be negative"):
            GazeData.from_arrays(**a)

    def test_all_nan_eye(self, tiny_session):
        a = arrays(tiny_session)
        a["eye_deg"] = np.full_like(a["eye_deg"], np.nan)
        a["fixation"] = np.full_like(a["fixation"], -1)
        with pytest.raises(GazeemError, match="NaN everywhere"):
            GazeData.from_arrays(**a)

    def test_empty_fixation_set(self, tiny_session):
        a = arrays(tiny_session)
        a["fixation"] = np.full_like(a["fixation"], -1)
        with pytest.raises(GazeemError, match="no fixations"):
            GazeData.from_arrays(**a)


class TestDataset:
    def test_negative_counts(self, tiny_session):
        tiny_session["counts"][0, 0] = -1
        with pytest.raises(SessionValidationError, match="field 'counts': has negative values"):
            GazeEM(**FAST).fit(tiny_session)

    def test_all_nan_eye(self, tiny_session):
        tiny_session["eye"][:] = np.nan
        tiny_session["eye_valid"][:] = False
        tiny_session["fixation"][:] = -1
        with pytest.raises(SessionValidationError, match="field 'eye': has no valid samples"):
            GazeEM(**FAST).fit(tiny_session)

    def test_empty_fixation_set(self, tiny_session):
        tiny_session["fixation"][:] = -1
        with pytest.raises(GazeemError, match="no fixations"):
            GazeEM(**FAST).fit(tiny_session)

    def test_wrong_dims_name_the_field(self, tiny_session):
        ds = tiny_session.rename({"unit": "neuron"})
        with pytest.raises(SessionValidationError, match="field 'counts': has dims"):
            GazeEM(**FAST).fit(ds)

    def test_grid_that_does_not_contain_the_readings(self, tiny_session):
        tiny_session.attrs["ppd"] = 40.0  # readings land far outside the 12 x 12 stimulus
        with pytest.raises(GazeemError, match=r"outside the gaze grid.*Check ppd"):
            GazeEM(**FAST).fit(tiny_session)

    def test_calibration_asked_for_but_absent(self, tiny_session):
        with pytest.raises(GazeemError, match="needs calibration fixations"):
            GazeEM(offset="calibration", **FAST).fit(tiny_session)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"estep": "gibbs"}, "estep must be one of"),
        ({"nonlinearity": "relu"}, "nonlinearity must be one of"),
        ({"patch_size": 0}, "patch_size must be a positive"),
        ({"smooth": "cross"}, r"smooth must be a finite number >= 0 or one of \['cv'\]"),
        ({"smooth": -1.0}, r"smooth must be a finite number >= 0 or one of \['cv'\]"),
        ({"window_min": 5, "window_max": 2}, "window_min <= window_max"),
        ({"prior": "weights"}, "needs prior_weights"),
    ],
)
def test_bad_hyperparameters(tiny_session, kw, match):
    with pytest.raises(GazeemError, match=match):
        GazeEM(**{**FAST, **kw}).fit(tiny_session)


def test_prior_weights_of_the_wrong_shape(tiny_session):
    with pytest.raises(GazeemError, match=r"prior_weights has shape \(3, 3\)"):
        GazeEM(prior="weights", prior_weights=np.ones((3, 3)), **FAST).fit(tiny_session)


def test_prior_hmm_is_read_as_latent_bin_with_a_deprecation_warning(tiny_session):
    with pytest.warns(FutureWarning, match="use latent='bin'"):
        old = GazeEM(prior="hmm", **FAST).fit(tiny_session)
    new = GazeEM(latent="bin", **FAST).fit(tiny_session)
    assert old.latent_ == new.latent_ == "bin"
    np.testing.assert_array_equal(old.gaze_per_bin()["mean"], new.gaze_per_bin()["mean"])
    np.testing.assert_array_equal(old.loglik_, new.loglik_)
