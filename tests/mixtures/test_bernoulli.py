"""The two-coin problem (Do & Batzoglou 2008, Nature Biotechnology 26:897)."""

import numpy as np
import pytest

from gazeem.errors import GazeemError, NotFittedError
from gazeem.mixtures import BernoulliMixture

ROWS = ["HTTTHHTHTH", "HHHHTHHHHH", "HTHHHHHTHH", "HTHTTTHHTT", "THHHTHHHTH"]
TOSSES = np.array([[c == "H" for c in r] for r in ROWS], dtype=float)
COINS = [1, 0, 0, 1, 0]  # B, A, A, B, A
COUNTS = np.c_[TOSSES.sum(1), np.full(5, 10)]


def coins(**kw):
    return BernoulliMixture(theta_init=[0.6, 0.5], fix_weights=True, device="cpu", **kw)


class TestCoins:
    def test_complete_data_estimates(self):
        m = coins().fit_complete(TOSSES, COINS)
        np.testing.assert_allclose(m.theta_, [0.80, 0.45], atol=1e-12)

    def test_first_em_step_matches_the_paper(self):
        with pytest.warns(UserWarning):
            m = coins(max_iter=1, tol=0).fit(TOSSES)
        np.testing.assert_allclose(m.theta_, [0.71, 0.58], atol=0.005)

    def test_em_reaches_a_fixed_point_and_never_lowers_the_likelihood(self):
        m = coins(tol=1e-14, max_iter=1000).fit(TOSSES)
        assert m.converged_
        np.testing.assert_allclose(m.theta_, [0.80, 0.52], atol=0.005)  # the paper's answer
        assert np.all(np.diff(m.lower_bounds_) >= -1e-15)
        again = coins(tol=0, max_iter=1).set_params(theta_init=m.theta_)
        with pytest.warns(UserWarning):
            again.fit(TOSSES)
        np.testing.assert_allclose(again.theta_, m.theta_, atol=1e-9)

    def test_counts_input_gives_the_same_biases(self):
        a = coins(tol=1e-12).fit(TOSSES)
        b = coins(tol=1e-12, input="counts").fit(COUNTS)
        np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-10)
        # the binomial coefficients shift the log-likelihood by a constant
        from scipy.special import comb

        assert b.lower_bound_ - a.lower_bound_ == pytest.approx(
            np.log(comb(10, COUNTS[:, 0])).mean()
        )

    def test_learned_weights(self):
        rng = np.random.default_rng(0)
        which = rng.random(400) < 0.3
        X = (rng.random((400, 20)) < np.where(which, 0.9, 0.2)[:, None]).astype(float)
        m = BernoulliMixture(2, random_state=0, device="cpu", tol=1e-10).fit(X)
        order = np.argsort(m.theta_)
        np.testing.assert_allclose(m.theta_[order], [0.2, 0.9], atol=0.02)
        np.testing.assert_allclose(m.weights_[order], [1 - which.mean(), which.mean()], atol=0.01)


class TestBadInput:
    @pytest.mark.parametrize("theta", [[1.2, 0.5], [-0.1, 0.5]])
    def test_bias_outside_unit_interval(self, theta):
        with pytest.raises(GazeemError, match=r"theta_init must lie in \[0, 1\]"):
            BernoulliMixture(theta_init=theta, device="cpu").fit(TOSSES)

    def test_non_binary_tosses(self):
        with pytest.raises(GazeemError, match="must be 0 or 1; use input='counts'"):
            BernoulliMixture(device="cpu").fit(TOSSES * 2)

    def test_heads_more_than_tosses(self):
        with pytest.raises(GazeemError, match="0 <= heads <= tosses"):
            BernoulliMixture(input="counts", device="cpu").fit([[11, 10], [3, 10]])

    def test_more_components_than_samples(self):
        with pytest.raises(GazeemError, match="n_components = 6, n_samples = 5"):
            BernoulliMixture(6, device="cpu").fit(TOSSES)

    def test_nan(self):
        X = TOSSES.copy()
        X[0, 0] = np.nan
        with pytest.raises(GazeemError, match="NaN or inf"):
            BernoulliMixture(device="cpu").fit(X)

    def test_not_fitted(self):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            BernoulliMixture().predict(TOSSES)
