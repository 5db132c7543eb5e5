"""Central credible intervals from the posterior's own piecewise-uniform shape (issue 14)."""

import numpy as np
import torch

from gazeem.gaze.intervals import (
    LEVELS,
    cell_quantiles,
    smoothed_cell_quantiles,
    tail_probs,
    window_intervals,
)


def brute_quantiles(w, first, var, probs, step=1e-4, width=1.0):
    """Quantiles by summing the density on a fine grid (cells ``width`` px wide, uniform,
    Gaussian added)."""
    w = np.asarray(w, dtype=np.float64) / np.sum(w)
    s = np.sqrt(var)
    h = width / 2
    x = np.arange(first - 1 - 8 * s, first + len(w) * width + 8 * s, step)
    dens = np.zeros_like(x)
    for j, wj in enumerate(w):
        c = first + j * width
        if s == 0:
            dens += wj * ((x >= c - h) & (x < c + h))
        else:
            from scipy.stats import norm

            dens += wj * (norm.cdf((x - c + h) / s) - norm.cdf((x - c - h) / s))
    cdf = np.cumsum(dens) * step
    return np.interp(probs, cdf / cdf[-1], x + step / 2)


def test_quantiles_match_brute_force():
    rng = np.random.default_rng(3)
    w = torch.as_tensor(rng.random((4, 9)) ** 3)
    w[1, :4] = 0  # empty cells on one side
    first = torch.tensor([3.0, -7.0, 20.0, 0.0])
    probs = tail_probs()
    for var in (torch.zeros(4), torch.tensor([0.0, 0.3, 1.7, 0.02])):
        got = smoothed_cell_quantiles(w, first, var, probs)
        for i in range(4):
            want = brute_quantiles(w[i].numpy(), float(first[i]), float(var[i]), probs.numpy())
            np.testing.assert_allclose(got[i].numpy(), want, atol=2e-3)


def test_quarter_pixel_cells_match_brute_force():
    """The sub-pixel posteriors' cells (:mod:`gazeem.gaze.subpixel`) are 1/4 px wide."""
    rng = np.random.default_rng(4)
    w = torch.as_tensor(rng.random((3, 12)) ** 4)
    first = torch.tensor([3.125, -7.375, 20.0])
    probs = tail_probs()
    for var in (torch.zeros(3), torch.tensor([0.0, 0.01, 0.2])):
        got = smoothed_cell_quantiles(w, first, var, probs, width=0.25)
        for i in range(3):
            want = brute_quantiles(
                w[i].numpy(), float(first[i]), float(var[i]), probs.numpy(), 1e-5, 0.25
            )
            np.testing.assert_allclose(got[i].numpy(), want, atol=2e-4)


def test_one_cell_gives_the_uniforms_interval():
    w = torch.zeros(1, 5)
    w[0, 2] = 1.0
    q = cell_quantiles(w, torch.tensor([10.0]), tail_probs((0.68, 0.95)))
    # the mass is uniform over [11.5, 12.5]: the central 68% is 12 ± 0.34
    np.testing.assert_allclose(q[0].numpy(), [11.66, 11.525, 12.34, 12.475], atol=1e-12)


def test_window_intervals_are_calibrated_on_draws_from_the_posterior():
    """Truths drawn from the posterior itself fall in its intervals at the stated rate."""
    rng = np.random.default_rng(0)
    n, h = 4000, 3
    side = 2 * h + 1
    dx, dy = np.meshgrid(np.arange(-h, h + 1), np.arange(-h, h + 1))  # k = iy * side + ix
    centers = rng.integers(10, 50, size=(n, 2))
    pos = torch.as_tensor(
        np.stack([centers[:, None, 0] + dx.ravel(), centers[:, None, 1] + dy.ravel()], -1),
        dtype=torch.float64,
    )
    # sharp and wide posteriors, off-centre: logits of a Gaussian bump at a random place
    mu = rng.uniform(-2, 2, size=(n, 2))
    width = rng.choice([0.3, 0.8, 2.0], size=n)
    logits = -((dx.ravel() - mu[:, :1]) ** 2 + (dy.ravel() - mu[:, 1:]) ** 2) / (
        2 * width[:, None] ** 2
    )
    q = torch.softmax(torch.as_tensor(logits), dim=1)
    var = torch.as_tensor(rng.choice([0.0, 0.1], size=n))
    lower, upper = window_intervals(q, pos, side, torch.zeros(n, dtype=torch.bool), var)
    cell = np.array([rng.choice(side * side, p=qi / qi.sum()) for qi in q.numpy()])
    truth = pos.numpy()[np.arange(n), cell] + rng.uniform(-0.5, 0.5, size=(n, 2))
    truth += rng.normal(size=(n, 2)) * np.sqrt(var.numpy())[:, None]
    for i, level in enumerate(LEVELS):
        inside = ((lower[..., i] <= truth) & (truth <= upper[..., i])).mean()
        # 8,000 draws: the binomial SD of the rate is at most 0.006
        assert abs(inside - level) < 0.02, (level, inside)


def test_pinned_rows_are_points():
    pos = torch.zeros(2, 9, 2, dtype=torch.float64)
    pos[0] = torch.tensor([5.0, 7.0])  # a calibration target: every cell at the target
    pos[1, :, 0] = torch.arange(9) % 3
    pos[1, :, 1] = torch.arange(9) // 3
    q = torch.full((2, 9), 1 / 9, dtype=torch.float64)
    lower, upper = window_intervals(q, pos, 3, torch.tensor([True, False]))
    np.testing.assert_array_equal(lower[0], [[5.0, 5.0], [7.0, 7.0]])
    np.testing.assert_array_equal(upper[0], lower[0])
    # three equal cells at 0, 1, 2: uniform over [-0.5, 2.5]: the central 95% runs from -0.425 to 2.425
    np.testing.assert_allclose(lower[1, :, 1], [-0.425, -0.425], atol=1e-12)
    np.testing.assert_allclose(upper[1, :, 1], [2.425, 2.425], atol=1e-12)
