"""Each bin's patch follows the eye's motion within its fixation, rounded with hysteresis
(``gazeem.gaze.posterior.motion_shift``), so that EM's small late changes of the tracker
gain do not make patches jump by a pixel (issue 19)."""

import numpy as np
import torch

from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.posterior import MOTION_HYSTERESIS_PX, motion_shift, within_fixation_motion
from gazeem.gaze.settings import ProblemSettings
from gazeem.models import PoissonLN, TrackerModel, UniformPrior
from tests.conftest import make_session


def test_the_patches_are_placed_again_only_when_some_bin_moved_by_more_than_the_margin():
    first = motion_shift(np.array([[0.48, -0.4], [0.55, 1.5], [2.2, -0.1]]), None)
    assert first.shift.tolist() == [[0, 0], [1, 2], [2, 0]]  # plain rounding (half to even)
    # every bin within 0.05 px of where it was placed: the old shifts, though 0.48 -> 0.52
    small = motion_shift(np.array([[0.52, -0.38], [0.51, 1.46], [2.2, -0.1]]), first)
    assert small is first
    # one bin moved by 0.06 px: every bin is rounded afresh
    large = motion_shift(np.array([[0.52, -0.38], [0.51, 1.46], [2.26, -0.1]]), first)
    assert large.shift.tolist() == [[1, 0], [1, 1], [2, 0]]
    assert MOTION_HYSTERESIS_PX == 0.05


def test_a_small_change_of_gain_moves_no_patch_and_a_large_one_moves_them_all():
    ds = make_session("small", seed=3, drift_px_per_bin=0.3, fixation_bins=(30, 50))
    data = GazeData.from_dataset(ds, torch.device("cpu"), torch.float64)
    tracker = TrackerModel(sigma=2.0)
    grid = GazeGrid(0, 39, 0, 39)
    prob = FixationProblem(
        data, grid, tracker, UniformPrior(grid.n_cells), PoissonLN(8, 12, 1).double(), None,
        ProblemSettings(),
    )  # fmt: skip
    prob.follow_motion()
    before = prob.batches.shift.clone()
    motion, _, w = within_fixation_motion(data, tracker)
    assert w > 0.5 and np.abs(motion).max() > 3  # the eye moves within fixations
    assert torch.equal(before, torch.as_tensor(motion).round().long())

    # 0.5% more gain: plain rounding would move some patches by a pixel; none moves
    tracker.gain = tracker.gain * 1.005
    motion, _, _ = within_fixation_motion(data, tracker)
    assert int((torch.as_tensor(motion).round().long() != before).any(1).sum()) >= 5
    prob.follow_motion()
    assert torch.equal(prob.batches.shift, before)

    # 30% less gain: the motion grows by 43%, and every bin is rounded afresh
    tracker.gain = tracker.gain / 1.005 * 0.7
    motion, _, _ = within_fixation_motion(data, tracker)
    prob.follow_motion()
    assert torch.equal(prob.batches.shift, torch.as_tensor(motion).round().long())
    assert int((prob.batches.shift != before).any(1).sum()) > 100
