"""ObjectLocationMixture (MetaGen) on simulated scenes."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from gazeem.errors import GazeemError
from gazeem.mixtures import ObjectLocationMixture, simulate_scene

SIGMA = 0.5


def matched(est, truth):
    cost = ((est.locations_[:, None] - truth["locations"][None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_scenes(seed):
    X, truth = simulate_scene(
        n_objects=5, n_categories=6, detections_per_object=40, sigma=SIGMA, accuracy=0.8, seed=seed
    )
    est = ObjectLocationMixture(5, n_categories=6, random_state=0, device="cpu").fit(X)
    rows, cols = matched(est, truth)
    err = np.linalg.norm(est.locations_[rows] - truth["locations"][cols], axis=1)
    # the mean of 40 detections is within the noise: σ √3 / √40 ≈ 0.14 in 3-D
    assert err.max() < SIGMA, err
    np.testing.assert_array_equal(est.categories_[rows], truth["categories"][cols])
    assert est.sigma_ == pytest.approx(SIGMA, rel=0.1)
    # p is the realised fraction of correct labels in this sample (0.725 to 0.825 here)
    realised = np.mean(X[:, 3] == truth["categories"][truth["object"]])
    assert est.accuracy_ == pytest.approx(realised, abs=0.01)
    assert np.all(np.diff(est.lower_bounds_) >= -1e-12)


def test_categories_separate_objects_that_locations_alone_confuse():
    """Two objects 0.5 σ apart with different categories: only the category model splits them."""
    rng = np.random.default_rng(4)
    locs = np.array([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [6.0, 6.0, 6.0]])
    cats = np.array([0, 1, 2])
    obj = np.repeat(np.arange(3), 150)
    x = locs[obj] + rng.normal(0, SIGMA, (len(obj), 3))
    lab = np.where(rng.random(len(obj)) < 0.95, cats[obj], (cats[obj] + 1) % 3)
    X = np.c_[x, lab]
    full = ObjectLocationMixture(3, n_categories=3, random_state=0, device="cpu").fit(X)
    base = ObjectLocationMixture(
        3, n_categories=3, use_categories=False, random_state=0, device="cpu"
    ).fit(X)
    acc = lambda est: max(  # noqa: E731
        np.mean(est.predict(X) == np.array(perm)[obj])
        for perm in __import__("itertools").permutations(range(3))
    )
    assert acc(full) > 0.9 and acc(base) < 0.8
    assert sorted(full.categories_.tolist()) == [0, 1, 2]


def test_gradient_m_step_reaches_the_closed_form_optimum():
    """Same starts, two M-steps: the same fixed point, compared up to the objects' order.

    The closed form and L-BFGS agree to ~1e-10 per step, so their paths agree to far below
    σ / √(detections) ≈ 0.08 (the locations' own standard error); 1e-5 is that with a
    factor 1e4 to spare. Three of the five starts reach the same optimum, in other orders,
    with lower bounds equal to the last bits: which of them is kept must not depend on
    those bits (the start selection treats gains below ``tol`` per sample as ties), and the
    comparison matches objects before comparing them.
    """
    X, _ = simulate_scene(seed=3)
    closed = ObjectLocationMixture(5, n_categories=6, random_state=0, device="cpu").fit(X)
    grad = ObjectLocationMixture(
        5, n_categories=6, random_state=0, mstep="gradient", device="cpu"
    ).fit(X)
    assert grad.lower_bound_ == pytest.approx(closed.lower_bound_, rel=1e-9)
    cost = ((grad.locations_[:, None] - closed.locations_[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_allclose(grad.locations_[rows], closed.locations_[cols], atol=1e-5)
    np.testing.assert_array_equal(grad.categories_[rows], closed.categories_[cols])
    assert grad.sigma_ == pytest.approx(closed.sigma_, rel=1e-5)
    assert grad.accuracy_ == pytest.approx(closed.accuracy_, rel=1e-5)
    assert np.all(np.diff(grad.lower_bounds_) >= -1e-9)


def test_ties_between_starts_go_to_the_first_start():
    """Starts 0, 3 and 4 of this scene reach one optimum in three orders: start 0 is kept."""
    X, _ = simulate_scene(seed=3)
    first = ObjectLocationMixture(5, n_categories=6, random_state=0, n_init=1, device="cpu")
    five = ObjectLocationMixture(5, n_categories=6, random_state=0, n_init=5, device="cpu")
    np.testing.assert_array_equal(five.fit(X).locations_, first.fit(X).locations_)


def test_bad_labels():
    X, _ = simulate_scene(seed=0)
    X[0, 3] = 9
    with pytest.raises(GazeemError, match=r"labels \(column 4\) must be integers in \[0, 5\]"):
        ObjectLocationMixture(5, n_categories=6, device="cpu").fit(X)
    with pytest.raises(GazeemError, match="4 columns"):
        ObjectLocationMixture(5, n_categories=6, device="cpu").fit(X[:, :3])
