"""The generic EM driver: convergence, history, the decrease warning, determinism."""

import math
import warnings

import numpy as np
import pytest
import torch

from gazeem.em.engine import ConvergenceWarning, EStep, LikelihoodDecreaseWarning, run_em
from gazeem.em.estep import normalize_log


class TwoPoissonMixture:
    """A discrete-latent model small enough to check by hand: counts from two Poissons."""

    exact = True

    def __init__(self, x, rates, weights):
        self.x = torch.as_tensor(x, dtype=torch.float64)
        self.rates = torch.as_tensor(rates, dtype=torch.float64)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.n_observations = len(x)

    def e_step(self):
        lp = (
            self.x[:, None] * torch.log(self.rates) - self.rates - torch.lgamma(self.x[:, None] + 1)
        )
        log_resp, log_marg = normalize_log(lp + torch.log(self.weights))
        return EStep(log_resp, float(log_marg.sum()))

    def m_step(self, estep):
        r = estep.posterior.exp()
        nk = r.sum(0)
        self.weights = nk / nk.sum()
        self.rates = (r * self.x[:, None]).sum(0) / nk

    def log_penalty(self):
        return 0.0


@pytest.fixture
def counts():
    rng = np.random.default_rng(0)
    return np.r_[rng.poisson(2.0, 300), rng.poisson(9.0, 200)]


class TestRunEM:
    def test_a_settled_answer_ends_em_before_tol_and_is_recorded(self, counts):
        """``settled`` stops EM on the answer: here the rates, at 1e-3 of a spike per bin
        for two steps in a row, long before the objective's change reaches 1e-13."""
        model = TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5])
        history = []

        def settled() -> bool:
            history.append(model.rates.clone())
            moves = [
                float((a - b).abs().max()) for a, b in zip(history[1:], history[:-1], strict=True)
            ]
            return len(moves) >= 2 and max(moves[-2:]) < 1e-3

        _, state = run_em(model, tol=1e-13, max_iter=20000, settled=settled)
        assert state.converged and state.settled
        assert state.n_iter == len(history) < 200
        ref = TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5])
        _, full = run_em(ref, tol=1e-13, max_iter=20000)
        assert full.converged and not full.settled and full.n_iter > state.n_iter
        # what the early stop left: rates within 0.05 spikes per bin of the fixed point's
        np.testing.assert_allclose(model.rates, ref.rates, atol=0.05)

    def test_converges_to_a_fixed_point_and_never_decreases(self, counts):
        model = TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5])
        _, state = run_em(model, tol=1e-13, max_iter=20000)
        assert state.converged
        assert np.all(np.diff(state.log_likelihood) >= -1e-9)
        # at the fixed point one more EM step changes nothing
        before = model.rates.clone()
        model.m_step(model.e_step())
        np.testing.assert_allclose(model.rates, before, rtol=1e-5)
        lo, hi = sorted(model.rates.tolist())
        assert 1.7 < lo < 2.4 and 8.0 < hi < 10.0  # truth: 2 and 9

    def test_history_matches_an_independent_evaluation(self, counts):
        model = TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5])
        with pytest.warns(ConvergenceWarning):
            _, state = run_em(model, tol=0, max_iter=3)
        assert state.n_iter == 3 and len(state.log_likelihood) == 4
        lam, w = model.rates.numpy(), model.weights.numpy()
        from scipy.stats import poisson

        dens = w[0] * poisson.pmf(counts, lam[0]) + w[1] * poisson.pmf(counts, lam[1])
        assert state.log_likelihood[-1] == pytest.approx(np.log(dens).sum(), rel=1e-12)

    def test_max_iter_reached_warns_and_reports_not_converged(self, counts):
        model = TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5])
        with pytest.warns(ConvergenceWarning, match="max_iter=2"):
            _, state = run_em(model, tol=0, max_iter=2)
        assert not state.converged and state.n_iter == 2
        assert any("did not converge" in w for w in state.warnings)
        assert not any("settle" in w for w in state.warnings)

    def test_max_iter_reached_with_a_settled_rule_names_it(self, counts):
        model = TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5])
        with pytest.warns(ConvergenceWarning, match="did not settle.*gaze_tol"):
            _, state = run_em(model, tol=0, max_iter=2, settled=lambda: False)
        assert not state.converged and not state.settled and state.n_iter == 2

    def test_a_decrease_in_exact_em_is_recorded(self, counts):
        class Saboteur(TwoPoissonMixture):
            def m_step(self, estep):
                self.rates = self.rates * torch.tensor([0.5, 3.0], dtype=torch.float64)

        model = Saboteur(counts, [2.0, 9.0], [0.6, 0.4])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.warns(LikelihoodDecreaseWarning, match="fell by"):
                _, state = run_em(model, tol=0, max_iter=1)
        assert any("fell by" in w for w in state.warnings)

    def test_no_warning_when_not_exact(self, counts):
        class Noisy(TwoPoissonMixture):
            exact = False

            def m_step(self, estep):
                self.rates = self.rates * 1.5

        model = Noisy(counts, [2.0, 9.0], [0.6, 0.4])
        with warnings.catch_warnings():
            warnings.simplefilter("error", LikelihoodDecreaseWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, state = run_em(model, tol=0, max_iter=2)
        assert not [w for w in state.warnings if "fell" in w]

    def test_deterministic(self, counts):
        a = run_em(TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5]), tol=1e-8)[1]
        b = run_em(TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5]), tol=1e-8)[1]
        assert a.log_likelihood == b.log_likelihood

    @pytest.mark.parametrize("kw", [{"tol": -1}, {"tol": math.nan}, {"max_iter": -1}])
    def test_bad_arguments(self, counts, kw):
        with pytest.raises(ValueError):
            run_em(TwoPoissonMixture(counts, [1.0, 5.0], [0.5, 0.5]), **kw)
