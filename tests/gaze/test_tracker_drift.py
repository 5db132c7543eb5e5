"""The tracker's drift within fixations, measured on consecutive fixations, against
sessions simulated here with a known drift (``gazeem.gaze.tracker_drift``)."""

from types import SimpleNamespace

import numpy as np
import torch

from gazeem.gaze.tracker_drift import fixation_spans, shared_pairs, tracker_drift_var
from gazeem.models.observation import TrackerModel

POSTERIOR_VAR = 0.01  # px² per axis of each fixation's posterior mean


def fixation_task(drift: float, shared: bool, seed: int, n_trials: int = 60):
    """Trials of 8 fixations (20-80 bins, 2-bin microsaccades of ~5 px between them) with a
    blink (10 invalid bins) after each. The tracker's error is 3 px per trial plus a random
    walk of ``drift`` px² per bin and axis, or (``shared=False``) drawn afresh per fixation.
    Returns the data's stand-in, the rows, the posterior means and variances."""
    rng = np.random.default_rng(seed)
    fixation, eye, reading, mean = [], [], [], []
    f = 0
    for _ in range(n_trials):
        offset = rng.normal(0, 3, 2)
        pos = rng.uniform(-10, 10, 2)
        for _k in range(8):
            n = int(rng.integers(20, 81))
            walk = offset + np.cumsum(rng.normal(0, np.sqrt(drift), (n + 2, 2)), 0)
            err = walk[:n] if shared else rng.normal(0, 3, 2) + walk[:n] - offset
            fixation += [f] * n + [-1, -1]
            eye += list(pos + err) + [pos + walk[n]] * 2
            reading.append(pos + err.mean(0))
            mean.append(pos + rng.normal(0, np.sqrt(POSTERIOR_VAR), 2))
            offset = walk[-1]
            pos = pos + rng.normal(0, 3.5, 2)  # a microsaccade, well under 1° (20 px)
            f += 1
        fixation += [-1] * 10
        eye += [[np.nan, np.nan]] * 10
    fixation = torch.as_tensor(fixation)
    data = SimpleNamespace(
        fixation=fixation,
        fit_bins=torch.nonzero(fixation >= 0)[:, 0],
        n_fixations=f,
        eye_px=np.asarray(eye, dtype=np.float64),
        fix_reading=torch.as_tensor(np.asarray(reading)),
        geometry=SimpleNamespace(ppd=20.0, center_px=(0.0, 0.0)),
    )
    var = torch.full((f, 2), POSTERIOR_VAR, dtype=torch.float64)
    return data, torch.arange(f), torch.as_tensor(np.asarray(mean)), var


def test_pairs_are_consecutive_fixations_within_a_trial():
    data, rows, _, _ = fixation_task(0.0, True, seed=0, n_trials=5)
    spans = fixation_spans(data)
    pairs = shared_pairs(data, rows.numpy(), *spans)
    assert len(pairs) == 5 * 7  # never across a blink
    np.testing.assert_array_equal(pairs[:, 1] - pairs[:, 0], 1)
    np.testing.assert_array_equal(pairs[:, 0] % 8 < 7, True)
    # a fixation that is not refined breaks the chain on both sides
    pairs_without = shared_pairs(data, np.delete(rows.numpy(), 3), *spans)
    assert len(pairs_without) == 5 * 7 - 2


def test_drift_is_recovered():
    data, rows, mean, var = fixation_task(0.004, True, seed=1, n_trials=240)
    added, d = tracker_drift_var(data, TrackerModel(sigma=3.0), rows, mean, var)
    # 1,680 pairs: over 20 seeds D / truth was 1.004 ± 0.029 (0.95-1.06); allow 4 SD
    assert abs(d / 0.004 - 1) < 0.12
    n_bins = torch.bincount(data.fixation[data.fit_bins])
    np.testing.assert_allclose(added.numpy(), d * n_bins.numpy() / 6)


def test_no_drift_where_the_error_is_constant_or_not_shared():
    def drift_of(*task):
        data, rows, mean, var = task
        return tracker_drift_var(data, TrackerModel(sigma=3.0), rows, mean, var)

    _, d_const = drift_of(*fixation_task(0.0, True, seed=2))
    assert d_const < 0.12 * 0.004  # none beyond the estimate's noise
    # an error drawn afresh per fixation: the pairs say nothing about the drift in one
    added, d_new = drift_of(*fixation_task(0.004, False, seed=3))
    assert d_new == 0.0 and not added.any()
