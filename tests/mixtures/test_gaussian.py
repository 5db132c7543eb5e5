"""GaussianMixture against scikit-learn, from the same explicit initialisation."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.mixture import GaussianMixture as SkGMM

from gazeem.errors import GazeemError, NotFittedError
from gazeem.mixtures import GaussianMixture

DATASETS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer}
TYPES = ["full", "tied", "diag", "spherical"]


def standardised(name):
    X = DATASETS[name]().data
    return (X - X.mean(0)) / X.std(0)


def explicit_init(X, cov_type, k=3):
    """A starting point from a one-step scikit-learn fit (so neither side chooses it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = SkGMM(k, covariance_type=cov_type, random_state=0, max_iter=1).fit(X)
    return dict(weights_init=s.weights_, means_init=s.means_, precisions_init=s.precisions_)


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("cov_type", TYPES)
@pytest.mark.parametrize("name", ["iris", "wine"])
class TestAgainstScikitLearn:
    def test_same_number_of_em_steps_gives_the_same_fit(self, name, cov_type):
        X = standardised(name)
        init = explicit_init(X, cov_type)
        kw = dict(covariance_type=cov_type, tol=0, max_iter=60, **init)
        with pytest.warns(UserWarning):
            sk = SkGMM(3, **kw).fit(X)
        with pytest.warns(UserWarning):
            gz = GaussianMixture(3, device="cpu", **kw).fit(X)
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
            assert rel_err(getattr(gz, attr), getattr(sk, attr)) < 1e-5, attr
        # lower_bound_ is scikit-learn's: the log-likelihood before the last M-step
        np.testing.assert_allclose(gz.lower_bounds_, sk.lower_bounds_, rtol=1e-9)
        assert gz.score(X) == pytest.approx(sk.score(X), rel=1e-9)

    def test_converged_fit_agrees(self, name, cov_type):
        X = standardised(name)
        init = explicit_init(X, cov_type)
        sk = SkGMM(3, covariance_type=cov_type, tol=1e-9, max_iter=2000, **init).fit(X)
        gz = GaussianMixture(
            3, covariance_type=cov_type, tol=1e-9, max_iter=2000, device="cpu", **init
        ).fit(X)
        # the same iterations in the same order: the same stopping point and the same fit
        # (1e-15 measured; 1e-9 leaves room for other CPUs' rounding)
        assert gz.converged_ and sk.converged_ and gz.n_iter_ == sk.n_iter_
        assert gz.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)
        for attr in ("weights_", "means_", "covariances_"):
            assert rel_err(getattr(gz, attr), getattr(sk, attr)) < 1e-9, attr
        np.testing.assert_allclose(gz.score_samples(X), sk.score_samples(X), rtol=1e-9)
        assert gz.bic(X) == pytest.approx(sk.bic(X), rel=1e-5)
        assert gz.aic(X) == pytest.approx(sk.aic(X), rel=1e-5)
        assert np.all(np.diff(gz.lower_bounds_) >= -1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_is_monotone_and_reproducible(init_params):
    X = standardised("breast_cancer")[:, :6]
    a = GaussianMixture(
        4, init_params=init_params, random_state=3, tol=1e-6, max_iter=500, device="cpu"
    ).fit(X)
    b = GaussianMixture(
        4, init_params=init_params, random_state=3, tol=1e-6, max_iter=500, device="cpu"
    ).fit(X)
    assert np.all(np.diff(a.lower_bounds_) >= -1e-12)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_n_init_keeps_the_best():
    X = standardised("wine")
    single = [
        GaussianMixture(3, n_init=1, random_state=s, device="cpu").fit(X).lower_bound_
        for s in range(4)
    ]
    multi = GaussianMixture(
        3, n_init=4, random_state=0, init_params="random_from_data", device="cpu"
    ).fit(X)
    assert multi.lower_bound_ >= min(single) - 1e-9


def test_chunked_e_step_gives_the_same_fit():
    X = standardised("breast_cancer")
    a = GaussianMixture(3, random_state=0, device="cpu", chunk_size=37).fit(X)
    b = GaussianMixture(3, random_state=0, device="cpu", chunk_size=100000).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10, atol=1e-12)


def test_recovers_a_known_mixture_and_samples_it():
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0], [6.0, 1.0], [-2.0, 7.0]])
    covs = np.array(
        [[[1.0, 0.6], [0.6, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.4], [-0.4, 0.7]]]
    )
    X = np.concatenate(
        [
            rng.multivariate_normal(m, c, n)
            for m, c, n in zip(means, covs, [3000, 2000, 1000], strict=True)
        ]
    )
    gz = GaussianMixture(3, random_state=0, device="cpu", tol=1e-8).fit(X)
    order = np.argsort(gz.means_[:, 0] + 10 * gz.means_[:, 1])
    truth = np.argsort(means[:, 0] + 10 * means[:, 1])
    np.testing.assert_allclose(gz.means_[order], means[truth], atol=0.08)
    np.testing.assert_allclose(gz.covariances_[order], covs[truth], atol=0.12)
    np.testing.assert_allclose(gz.weights_[order], np.array([0.5, 1 / 3, 1 / 6])[truth], atol=0.01)
    S, y = gz.sample(20000)
    assert S.shape == (20000, 2) and set(np.unique(y)) == {0, 1, 2}
    np.testing.assert_allclose(S.mean(0), X.mean(0), atol=0.1)


class TestBadInput:
    X = standardised("iris")

    def test_nan(self):
        X = self.X.copy()
        X[3, 2] = np.nan
        with pytest.raises(GazeemError, match="NaN or inf"):
            GaussianMixture(2, device="cpu").fit(X)

    def test_wrong_dimensions(self):
        with pytest.raises(
            GazeemError, match=r"must be 2-D, got shape \(150,\); Reshape your data"
        ):
            GaussianMixture(2, device="cpu").fit(self.X[:, 0])

    def test_more_components_than_samples(self):
        with pytest.raises(GazeemError, match="n_components = 6, n_samples = 5"):
            GaussianMixture(6, device="cpu").fit(self.X[:5])

    def test_ill_conditioned_covariance_without_reg_covar(self):
        X = np.c_[self.X[:, :2], self.X[:, 0] + self.X[:, 1]]  # rank-deficient
        with pytest.raises(
            GazeemError, match=r"ill-defined empirical covariance.*increase reg_covar"
        ):
            GaussianMixture(2, reg_covar=0.0, random_state=0, device="cpu").fit(X)

    def test_bad_covariance_type_and_init_shapes(self):
        with pytest.raises(GazeemError, match="covariance_type must be one of"):
            GaussianMixture(2, covariance_type="banana", device="cpu").fit(self.X)
        with pytest.raises(GazeemError, match=r"'means' should have the shape of \(2, 4\)"):
            GaussianMixture(2, means_init=np.zeros((3, 4)), device="cpu").fit(self.X)
        with pytest.raises(GazeemError, match="should be normalized"):
            GaussianMixture(2, weights_init=[0.7, 0.7], device="cpu").fit(self.X)

    def test_not_fitted(self):
        with pytest.raises(NotFittedError):
            GaussianMixture(2).predict(self.X)
        with pytest.raises(NotFittedError):
            GaussianMixture(2).means_  # noqa: B018
