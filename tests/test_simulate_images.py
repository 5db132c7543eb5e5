"""Sessions over photographs (``stimulus="images"``): frames, field scaling, bad input."""

import numpy as np
import pytest

from gazeem.errors import GazeemError
from gazeem.simulate import simulate_session
from tests.conftest import make_session, photographs

KW = dict(n_bins=1200, stim_rows=40, stim_cols=40, frame_hold=120, rf_zero_mean=True)


def test_photographs_are_held_and_standardised():
    s = make_session("small", seed=2, stimulus="images", **KW)
    frames = s["stimulus"].values
    assert frames.shape == (10, 40, 40)
    np.testing.assert_allclose(frames.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(axis=(1, 2)), 1, atol=1e-4)
    # frame f shows photograph f mod 8 (eight photographs), each a distinct image
    np.testing.assert_array_equal(frames[8], frames[0])
    assert not np.allclose(frames[1], frames[0])
    # bins 0-119 show frame 0, 120-239 frame 1
    assert (s["frame"].values[:120] == 0).all() and (s["frame"].values[120:240] == 1).all()


def test_fields_are_scaled_to_the_photographs():
    """Unit-norm Gabors on photographs gave up to 1e7 spikes a bin; scaled so that the
    drive has SD rf_norm, the rates stay in the simulated 10-40 Hz range."""
    s = make_session("small", seed=2, stimulus="images", **KW)
    hz = s["counts"].values.mean(0) / s.attrs["bin_s"]
    assert 5 < np.median(hz) < 60
    assert s["counts"].values.max() < 1000


def test_images_of_the_wrong_size_name_the_field():
    with pytest.raises(GazeemError, match="field 'images'"):
        simulate_session(stimulus="images", images=photographs(32, 32), **KW)
    with pytest.raises(GazeemError, match="field 'images'"):
        simulate_session(stimulus="images", **KW)
