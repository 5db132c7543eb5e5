"""SQUAREM (gazeem.em.squarem) in run_em: exact on a linear EM map, monotone, and the
gaze model reaches plain EM's objective."""

import itertools
import warnings

import pytest
import torch

from gazeem.em.engine import EStep, LikelihoodDecreaseWarning, run_em
from gazeem.gaze.estimator import GazeEM
from tests.conftest import make_session


class LinearEM:
    """EM whose map contracts to ``θ*`` by ``ρ`` per step; objective ``−n ‖θ − θ*‖²``.

    Plain EM needs ``log(tol) / log(ρ)`` steps; SQUAREM solves a scalar-rate linear map
    in one extrapolation (``θ' = θ*`` exactly).
    """

    exact = True
    n_observations = 1

    def __init__(self, rho: float, start, target) -> None:
        self.rho = rho
        self.theta = torch.tensor(start, dtype=torch.float64)
        self.target = torch.tensor(target, dtype=torch.float64)
        self.e_steps = 0

    def e_step(self) -> EStep:
        self.e_steps += 1
        return EStep(None, -float(((self.theta - self.target) ** 2).sum()))

    def m_step(self, estep: EStep) -> None:
        self.theta = self.target + self.rho * (self.theta - self.target)

    def log_penalty(self) -> float:
        return 0.0

    def parameter_vector(self) -> torch.Tensor:
        return self.theta.clone()

    def set_parameter_vector(self, v: torch.Tensor) -> None:
        self.theta = v.clone()


def test_one_extrapolation_solves_a_linear_map():
    plain = LinearEM(0.95, [3.0, -2.0], [1.0, 1.0])
    _, s_plain = run_em(plain, tol=1e-10, max_iter=1000)
    fast = LinearEM(0.95, [3.0, -2.0], [1.0, 1.0])
    _, s_fast = run_em(fast, tol=1e-10, max_iter=1000, accelerate=True)
    assert s_plain.converged and s_fast.converged
    # the objective's change, 13 · 0.95^(2k) · (1 − 0.95²), falls below 1e-10 at k ≈ 228
    assert s_plain.n_iter > 200
    assert torch.allclose(fast.theta, fast.target, atol=1e-9)
    assert s_fast.extrapolations[0] >= 1
    assert fast.e_steps < 10
    # the history stays monotone and its length is the iterations recorded
    obj = s_fast.objective
    assert len(obj) == s_fast.n_iter + 1
    assert all(b >= a for a, b in itertools.pairwise(obj))


def test_a_worse_extrapolation_is_refused():
    class Overshoot(LinearEM):
        # the map oscillates and grows along one axis: extrapolating from it overshoots,
        # and the safeguard must keep θ2 (never a lower objective)
        def m_step(self, estep):
            d = self.theta - self.target
            self.theta = self.target + torch.tensor([0.5, -0.9], dtype=torch.float64) * d

    m = Overshoot(0.0, [3.0, -2.0], [0.0, 0.0])
    _, s = run_em(m, tol=1e-12, max_iter=200, accelerate=True)
    obj = s.objective
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(obj))
    assert s.converged
    # some tries were refused: more E-steps spent than points accepted (measured 134, 42)
    assert s.extrapolations[1] > s.extrapolations[0]


@pytest.mark.parametrize("seed", [5, 7])
def test_the_gaze_model_reaches_plain_ems_objective(seed):
    s = make_session("tiny", seed=seed)
    kw = dict(patch_size=4, max_iter=300, device="cpu", learn_gain=False, heldout_check=False)
    kw["dtype"] = "float64"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LikelihoodDecreaseWarning)
        plain = GazeEM(**kw).fit(s)
        fast = GazeEM(**kw, accelerate=True).fit(s)
    assert plain.converged_ and fast.converged_
    # measured: −86.536 and −86.535 (seed 5), −79.685 both (seed 7); tol is 1e-5 per bin
    n = s.sizes["time"]
    assert fast.state_.objective[-1] == pytest.approx(plain.state_.objective[-1], abs=1e-3 * n)
    assert fast.state_.extrapolations[1] > 0
