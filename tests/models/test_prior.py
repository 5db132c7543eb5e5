"""Grid priors."""

import math

import numpy as np
import pytest
import torch

from gazeem.models.prior import CellWeightsPrior, CountsPrior, UniformPrior


def test_uniform():
    p = UniformPrior(12)
    assert torch.allclose(
        p.log_prob(torch.tensor([0, 5, 11])), torch.full((3,), -math.log(12), dtype=torch.float64)
    )


def test_cell_weights_are_normalised_over_the_grid():
    w = np.array([[1.0, 3.0], [0.0, 4.0]])
    p = CellWeightsPrior(torch.as_tensor(w))
    np.testing.assert_allclose(
        p.log_prob(torch.tensor([0, 1, 3])).exp().numpy(), [0.125, 0.375, 0.5]
    )
    assert p.log_prob(torch.tensor([2])).item() == -math.inf


@pytest.mark.parametrize("bad", [[-1.0, 2.0], [0.0, 0.0], [np.nan, 1.0]])
def test_cell_weights_reject_bad_values(bad):
    with pytest.raises(ValueError):
        CellWeightsPrior(torch.tensor(bad))


def test_counts_prior_is_the_dirichlet_map_of_posterior_counts():
    p = CountsPrior(4, pseudocount=0.5)
    cells = torch.tensor([[0, 1], [1, 2]])
    w = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64)
    p.m_step(cells, w)
    expected = np.array([0.25, 1.25, 0.5, 0.0]) + 0.5
    np.testing.assert_allclose(p.log_prob(torch.arange(4)).exp().numpy(), expected / expected.sum())
    assert p.log_penalty() == pytest.approx(0.5 * np.log(expected / expected.sum()).sum())
