"""Cross-fitting against brute force (issue 14)."""

from types import SimpleNamespace

import numpy as np
import torch

from gazeem.gaze.crossfit import FOLDS, MIN_PAIRS, cross_fit


class MeanProblem:
    """A stand-in for a fitted problem whose "fields" are one number: the mean of the
    fixations' values ``x`` weighted by their posterior mass (zero outside the fit)."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.response = torch.nn.Linear(1, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.response.weight.fill_(123.0)  # the "EM fit", to be restored
        self.settings = SimpleNamespace(mstep=SimpleNamespace(prune_mass=1e-6))

    def fit_response(self, cells, weights, keep):
        self.n_fits = getattr(self, "n_fits", 0) + 1
        mass = (weights * keep).sum(1)
        with torch.no_grad():
            self.response.weight.fill_(float((mass * self.x).sum() / mass.sum()))

    def theta(self) -> float:
        return float(self.response.weight.detach())


def test_cross_fit_scores_each_fixation_without_its_fold():
    n_fix, k = 14, 5
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_fix, generator=gen, dtype=torch.float64)
    log_q = torch.log_softmax(torch.randn(n_fix, k, generator=gen, dtype=torch.float64), 1)
    post = SimpleNamespace(log_q=log_q, windows=SimpleNamespace(cells=None))
    problem = MeanProblem(x)

    def score():  # (F, 2): each fixation's value and the current "fields"
        return torch.stack([x, torch.full_like(x, problem.theta())], 1)

    def position():  # every fixation "placed" at the fields' value, on both axes
        theta = torch.full((n_fix, 2), problem.theta(), dtype=torch.float64)
        return theta, torch.ones(n_fix, dtype=torch.bool)

    out = cross_fit(problem, post, position, score)

    fold = np.arange(n_fix) % FOLDS
    mass = log_q.exp().sum(1).numpy()
    xs = x.numpy()

    def mean_on(folds):
        on = np.isin(fold, folds)
        return float((mass[on] * xs[on]).sum() / mass[on].sum())

    expected = np.array([mean_on([j for j in range(FOLDS) if j != fold[f]]) for f in range(n_fix)])
    np.testing.assert_allclose(out.scores[:, 1].numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(out.scores[:, 0].numpy(), xs, rtol=0)
    # one-fold fields: fixation f of fold k is placed by the fields of each other fold
    one = [mean_on([j]) for j in range(FOLDS)]
    sq = sum((one[(k + 1) % 3] - one[(k + 2) % 3]) ** 2 * (fold == k).sum() for k in range(3))
    expected_var = 2 * sq / (4 * n_fix) / (FOLDS - 1)  # two axes, half the squared difference
    assert int((~out.pair_var.isnan()).sum()) == n_fix
    np.testing.assert_allclose(out.field_var(), expected_var, rtol=1e-9)
    # pooled over a group of at least MIN_PAIRS fixations: that group's pairs only
    per_fix = np.array([(one[(k + 1) % 3] - one[(k + 2) % 3]) ** 2 / 2 for k in fold])
    group = torch.arange(n_fix) < MIN_PAIRS
    np.testing.assert_allclose(
        out.field_var(group), per_fix[:MIN_PAIRS].mean() / (FOLDS - 1), rtol=1e-9
    )
    # a smaller group: every fixation's
    np.testing.assert_allclose(out.field_var(torch.arange(n_fix) < 3), expected_var, rtol=1e-9)
    assert problem.theta() == 123.0  # EM's fields restored
    # without scores: the fields' noise alone, from the one-fold refits only
    problem.n_fits = 0
    noise_only = cross_fit(problem, post, position)
    assert noise_only.scores is None and problem.n_fits == FOLDS
    np.testing.assert_array_equal(noise_only.pair_var.numpy(), out.pair_var.numpy())


def test_cross_fit_needs_three_fixations_per_fold():
    post = SimpleNamespace(log_q=torch.zeros(8, 1, dtype=torch.float64))
    assert cross_fit(MeanProblem(torch.zeros(8)), post, None, None) is None
