"""The held-out posterior-predictive check's summaries (issue 14), against counts drawn
from known rates."""

import numpy as np
import torch

from gazeem.gaze.predictive import MAX_COUNT, PredictiveCheck


def _draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rate = torch.exp(torch.randn(n, 20, generator=g, dtype=torch.float64) - 1.5)
    return rate, torch.poisson(rate, generator=g)


def test_a_true_model_is_calibrated():
    rate, counts = _draw(50_000, 0)
    check = PredictiveCheck()
    for a in range(0, 50_000, 7_000):  # streamed in pieces, as the held-out scoring does
        check.add(rate[a : a + 7_000], counts[a : a + 7_000])
    assert check.pairs.sum() == rate.numel()
    full = check.pairs >= 1_000
    se = np.sqrt(check.mean_predicted()[full] / check.pairs[full])  # Poisson SE of a mean
    z = (check.mean_observed()[full] - check.mean_predicted()[full]) / se
    assert np.abs(z).max() < 4.5  # 12 groups: a 4.5-SE miss has odds below 1e-4
    assert abs(check.slope() - 1) < 0.01
    obs, pred = check.count_fractions()
    assert abs(pred.sum() - 1) < 1e-9
    binom = np.sqrt(pred * (1 - pred) / rate.numel())
    assert np.all(np.abs(obs - pred) < 4.5 * binom + 1e-12)
    assert obs.size == MAX_COUNT + 1


def test_a_wrong_model_is_not():
    """Rates predicted from the wrong bins (a gaze that misses): too extreme, slope < 1;
    and a model that ignores over-dispersion predicts too few zeros."""
    rate, counts = _draw(50_000, 1)
    wrong = rate[torch.randperm(rate.shape[0], generator=torch.Generator().manual_seed(2))]
    check = PredictiveCheck()
    check.add(wrong, counts)
    assert check.slope() < 0.5
    # over-dispersed counts (a gamma-distributed rate about the prediction)
    g = torch.Generator().manual_seed(3)
    shape = 0.5
    gamma = torch.distributions.Gamma(torch.full_like(rate, shape), torch.full_like(rate, shape))
    torch.manual_seed(3)
    dispersed = torch.poisson(rate * gamma.sample(), generator=g)
    over = PredictiveCheck()
    over.add(rate, dispersed)
    obs, pred = over.count_fractions()
    assert obs[0] > pred[0] + 0.02 and obs[-1] > 1.5 * pred[-1]
