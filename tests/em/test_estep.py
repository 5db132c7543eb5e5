"""Log-space E-step helpers against direct computation."""

import numpy as np
import pytest
import torch

from gazeem.em.estep import normalize_log, prune_support, sample_support


class TestNormalizeLog:
    def test_matches_direct_normalisation(self):
        rng = np.random.default_rng(1)
        lj = rng.normal(size=(5, 7)) * 3
        log_q, log_m = normalize_log(torch.as_tensor(lj))
        p = np.exp(lj)
        np.testing.assert_allclose(log_q.exp().numpy(), p / p.sum(1, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(log_m.numpy(), np.log(p.sum(1)), rtol=1e-12)

    def test_stable_where_raw_probabilities_underflow(self):
        lj = torch.tensor([[-2000.0, -2001.0, -torch.inf]], dtype=torch.float64)
        log_q, log_m = normalize_log(lj)
        q = log_q.exp().numpy()[0]
        np.testing.assert_allclose(q, [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1)), 0.0])
        assert log_m.item() == pytest.approx(-2000 + np.log1p(np.exp(-1)))

    def test_empty_support_gives_minus_inf_not_nan(self):
        log_q, log_m = normalize_log(torch.full((1, 3), -torch.inf))
        assert torch.isneginf(log_q).all() and torch.isneginf(log_m).all()


class TestPruneSupport:
    def test_keeps_the_smallest_set_holding_the_mass(self):
        q = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]], dtype=torch.float64)
        keep = prune_support(q.log(), mass_tol=0.1)
        assert keep.tolist() == [[True, True, True, False], [True, False, False, False]]

    def test_zero_tolerance_keeps_every_cell_with_mass(self):
        q = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
        assert prune_support(q.log(), 0.0).tolist() == [[True, True, False]]


class TestSampleSupport:
    def test_counts_sum_and_follow_q(self):
        q = torch.tensor([[0.7, 0.2, 0.1, 0.0]], dtype=torch.float64)
        g = torch.Generator().manual_seed(0)
        c = sample_support(q.log(), 20000, g)
        assert int(c.sum()) == 20000 and int(c[0, 3]) == 0
        np.testing.assert_allclose(c[0, :3].numpy() / 20000, [0.7, 0.2, 0.1], atol=0.015)

    def test_seeded_draws_repeat(self):
        q = torch.softmax(torch.randn(4, 9, generator=torch.Generator().manual_seed(3)), 1).log()
        a = sample_support(q, 16, torch.Generator().manual_seed(7))
        b = sample_support(q, 16, torch.Generator().manual_seed(7))
        assert torch.equal(a, b)
