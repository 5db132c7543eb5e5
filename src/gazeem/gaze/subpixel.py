"""Sub-pixel gaze for the per-fixation latent, where the bins follow the eye (issue 14).

The gaze grid has a cell per stimulus pixel, and a patch is cut at a whole pixel, so a
fixation whose bins all sit at one place has a likelihood that is flat within its cell:
the posterior of its position is that cell's pixel, uniform, and nothing finer can be
read from the spikes. Once the bins follow the eye's motion within the fixation
(:meth:`gazeem.gaze.fixation.FixationProblem.follow_motion`), they are not: a fixation
at ``c + φ`` (``φ`` a fraction of a pixel) puts bin ``t``'s patch at
``c + round(φ + m_t)``, so different fractions cut different patches where the motion
``m_t`` crosses a pixel's edge. The spikes then tell the fractions apart, and a
posterior that keeps the whole pixel is too wide on one side and puts the fixation on
the wrong one of two pixels on the other (on the fixation task, 19% of fixations were
more than half a pixel off while the interval said ±0.47 px).

:func:`refine_subpixel` runs after EM: around each fixation's most probable cell it
scores a 3×3-pixel neighbourhood at :data:`PHASES` × :data:`PHASES` fractions of a pixel
(the E-step's window log-likelihood once per fraction, with the bins' patches moved by
``round(φ + m_t)``), adds the tracker and the prior, and normalises. A fixation whose
posterior puts more than :data:`TRUNCATION` of its mass outside that neighbourhood (broad
posteriors: weak evidence) keeps its whole-pixel posterior. This is the coarse-to-fine
step of McFarland et al. (2014), on the E-step only.

At this scale the fields' errors matter: each fixation is scored under fields fitted
without its spikes, and the variance that the fields' own noise adds is measured and
added to its posterior (:mod:`gazeem.gaze.crossfit`; on the fixation task the 95%
interval covered 77% with EM's fields, 81% cross-fitted, 93% with the fields' noise),
and the tracker's own drift within a fixation, measured on consecutive fixations, is
added to its bins (:mod:`gazeem.gaze.tracker_drift`). The fixations kept at whole
pixels keep EM's posterior, widened by the fields' noise measured on them apart (it
moves a broad likelihood more than a sharp one): on 4 minutes of photographs, where
almost none is refined, the 95% interval covered 77% before and 92% after. Their mean
is EM's, not the cross-fitted one: on one minute of photographs, fields fitted on two
thirds of the fixations moved the mean's error from 4.56 to 5.22 px
(``docs/architecture.md``, "Tried, not kept").
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from gazeem.em.estep import normalize_log
from gazeem.gaze.crossfit import cross_fit
from gazeem.gaze.data import GazeData
from gazeem.gaze.fixation import FixationPosterior, FixationProblem
from gazeem.gaze.intervals import window_intervals
from gazeem.gaze.posterior import position_moments, within_fixation_motion
from gazeem.gaze.tracker_drift import tracker_drift_var
from gazeem.gaze.windows import Windows, square_offsets
from gazeem.models.observation import TrackerModel

#: fractions of a pixel per axis: the refined cells are 1/4 px wide
PHASES = 4
#: refine a fixation only when its posterior leaves at most this mass outside the 3×3
#: pixels around its most probable cell
TRUNCATION = 1e-3
#: score each fixation under fields fitted without it (:mod:`gazeem.gaze.crossfit`)
CROSS_FIT = True


@dataclass(frozen=True)
class SubpixelPosterior(FixationPosterior):
    """A :class:`FixationPosterior` with sub-pixel posteriors for some fixations and the
    fields' noise in the others.

    ``rows (R,)`` the refined fixations (possibly none); ``fine_q (R, S²)`` their
    posterior over ``S × S`` cells ``width`` px wide at ``fine_pos (R, S², 2)`` stimulus
    px (``S = 3 · PHASES``). Other fixations keep EM's whole-pixel posterior ``log_q``,
    widened by ``whole_field_var`` px² per axis, the noise of the fields that
    :mod:`gazeem.gaze.crossfit` measured on them (calibration fixations: not widened).
    """

    rows: torch.Tensor = None
    fine_q: torch.Tensor = None
    fine_pos: torch.Tensor = None
    fine_side: int = 0
    width: float = 1.0
    #: px² per axis that the fields' own noise adds (:mod:`gazeem.gaze.crossfit`)
    field_var: float = 0.0
    #: ``(R,)`` px² per axis that the tracker's drift within a fixation adds to its bins
    #: (:func:`tracker_drift_var`), and that drift, px² per bin
    drift_var: torch.Tensor = None
    drift_px2_per_bin: float = 0.0
    whole_field_var: float = 0.0

    def _whole_var(self, data: GazeData) -> np.ndarray:
        """``(F,)`` px² per axis added to the fixations kept at whole pixels."""
        extra = np.where(data.is_calibration.numpy(), 0.0, self.whole_field_var)
        extra[self.rows.numpy()] = 0.0
        return extra

    def per_fixation(self, data: GazeData, tracker: TrackerModel) -> dict[str, np.ndarray]:
        s = super().per_fixation(data, tracker)
        s["sd"] = np.sqrt(s["sd"] ** 2 + self._whole_var(data)[:, None])
        q, pos, r = self.fine_q, self.fine_pos, self.rows.numpy()
        mean, var = fine_moments(q, pos, self.width, self.field_var)
        s["mean"][r] = mean.numpy()
        s["sd"][r] = var.sqrt().numpy()
        s["map"][r] = pos[torch.arange(r.size), q.argmax(1)].numpy()
        return s

    def fixation_intervals(self, data: GazeData, var: np.ndarray):
        lower, upper = super().fixation_intervals(data, var + self._whole_var(data))
        r = self.rows.numpy()
        pinned = torch.zeros(r.size, dtype=torch.bool)
        lo, hi = window_intervals(
            self.fine_q,
            self.fine_pos,
            self.fine_side,
            pinned,
            torch.as_tensor(var[r]) + self.field_var + self.drift_var,
            width=self.width,
        )
        lower[r], upper[r] = lo, hi
        return lower, upper

    def per_bin(self, data: GazeData, tracker: TrackerModel) -> dict[str, np.ndarray]:
        out = super().per_bin(data, tracker)  # its intervals hold drift_var already
        extra = np.zeros(data.n_fixations + 1)  # the last entry: bins outside fixations
        extra[self.rows.numpy()] = self.drift_var.numpy()
        out["sd"] = np.sqrt(out["sd"] ** 2 + extra[data.fixation.cpu().numpy()][:, None])
        return out


def fine_moments(q, pos, width: float, field_var: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, 2)`` mean and variance (px, px² per axis) of the fine posteriors ``q (R, S²)``
    at ``pos (R, S², 2)``, the variance with a cell's own width and the fields' noise."""
    mean, var = position_moments(q, pos)
    return mean, var + width**2 / 12 + field_var


def refine_subpixel(problem, post):
    """``post`` with sub-pixel posteriors where the spikes resolve them and the fields'
    noise added where they do not (module docstring); ``post`` itself for other latents
    and modes, or with too few fixations to cross-fit and none to refine."""
    if (
        not isinstance(problem, FixationProblem)
        or type(post) is not FixationPosterior
        or post.draws is not None
    ):
        return post
    data, grid = problem.data, problem.grid
    n_fix = post.log_q.shape[0]
    q = post.log_q.exp().cpu()
    cells = post.windows.cells.cpu()
    c = cells[torch.arange(n_fix), q.argmax(1)].clone()
    c[:, 0] = c[:, 0].clamp(grid.x0 + 1, grid.x1 - 1)
    c[:, 1] = c[:, 1].clamp(grid.y0 + 1, grid.y1 - 1)
    near = ((cells - c[:, None]).abs() <= 1).all(-1)
    rows = torch.nonzero(((q * near).sum(1) >= 1 - TRUNCATION) & ~data.is_calibration)[:, 0]
    if problem.batches.shift is None:  # no bin moves: nothing finer can be read
        rows = rows[:0]
    small = c[:, None, :] + square_offsets(torch.arange(-1, 2))  # (F, 9, 2)
    dev = data.counts.device
    win = Windows(
        half=1,
        centers=c.to(dev),
        cells=small.to(dev),
        cell_index=grid.cell_index(small).to(dev),
        support=torch.ones(small.shape[:2], dtype=torch.bool, device=dev),
    )
    side = 3 * PHASES
    first = c.to(torch.float64) - 1.5 + 0.5 / PHASES  # (F, 2): each first fine cell
    fine_pos = first[:, None, :] + square_offsets(torch.arange(side, dtype=torch.float64) / PHASES)
    refined = torch.zeros(n_fix, dtype=torch.bool)
    refined[rows] = True
    whole_pos = data.pin_calibration(cells.to(torch.float64), centered=False)

    def fine_joint() -> torch.Tensor:
        return _fine_log_joint(problem, win, small)

    def position() -> tuple[torch.Tensor, torch.Tensor]:
        whole = _whole_log_joint(problem, post.windows)
        mean, _ = position_moments(normalize_log(whole)[0].exp(), whole_pos)
        if rows.numel():
            fine, _ = position_moments(normalize_log(fine_joint())[0].exp(), fine_pos)
            mean = torch.where(refined[:, None], fine, mean)
        return mean, ~data.is_calibration

    crossed = None
    if CROSS_FIT:  # the cross-fitted scores only where a fixation is refined
        crossed = cross_fit(problem, post, position, fine_joint if rows.numel() else None)
    if crossed is None and rows.numel() == 0:
        return post
    base = {f.name: getattr(post, f.name) for f in fields(FixationPosterior)}
    field_var = whole_var = 0.0
    if crossed is None:
        fine_scores = fine_joint()[rows]
    else:
        fine_scores = crossed.scores[rows] if rows.numel() else torch.zeros(0, side * side)
        field_var = crossed.field_var(refined)
        whole_var = crossed.field_var(~refined & ~data.is_calibration)
    log_q_fine, _ = normalize_log(fine_scores.to(torch.float64))
    mean, var = fine_moments(log_q_fine.exp(), fine_pos[rows], 1.0 / PHASES, field_var)
    drift_var, drift = tracker_drift_var(data, problem.tracker, rows, mean, var)
    return SubpixelPosterior(
        **base,
        rows=rows,
        fine_q=log_q_fine.exp(),
        fine_pos=fine_pos[rows],
        fine_side=side,
        width=1.0 / PHASES,
        field_var=field_var,
        drift_var=drift_var,
        drift_px2_per_bin=drift,
        whole_field_var=whole_var,
    )


def _whole_log_joint(problem, win: Windows) -> torch.Tensor:
    """``(F, K)`` float64 log joint of every fixation's window cells under the current
    fields (the E-step's, untempered), ``-inf`` outside each window's support."""
    saved_weight, problem.response_weight = problem.response_weight, None
    try:
        with torch.no_grad():
            joint = problem.window_loglik(win).cpu().to(torch.float64) + problem.log_other(win)
    finally:
        problem.response_weight = saved_weight
    return joint.masked_fill(~win.support.cpu(), -torch.inf)


def _fine_log_joint(problem, win: Windows, small: torch.Tensor) -> torch.Tensor:
    """``(F, S²)`` float64 log joint of every fixation's fine cells under the current
    fields (all its bins' spikes, the tracker and the prior), ``S = 3 · PHASES`` fractions
    per axis over the 3×3 pixels ``small (F, 9, 2)``."""
    data, batches = problem.data, problem.batches
    n_fix, s, dev = small.shape[0], PHASES, data.counts.device
    phases = -0.5 + (torch.arange(s, dtype=torch.float64) + 0.5) / s
    motion = torch.as_tensor(within_fixation_motion(data, problem.tracker)[0])
    log_prior = problem.cell_prior.log_prob(win.cell_index.cpu())
    out = torch.empty(n_fix, 3, s, 3, s, dtype=torch.float64)  # (f, iy, jy, ix, jx)
    saved, saved_weight = batches.shift, problem.response_weight
    try:
        problem.response_weight = None
        with torch.no_grad():
            for jy in range(s):
                for jx in range(s):
                    phi = torch.stack([phases[jx], phases[jy]])
                    batches.set_shift(torch.floor(motion + phi + 0.5).to(torch.int64).to(dev))
                    ll = problem.window_loglik(win).cpu()
                    pos = data.pin_calibration(small.to(torch.float64) + phi - problem.center_px)
                    tr = problem.tracker.log_prob(data.fix_reading, pos)
                    out[:, :, jy, :, jx] = (ll + tr + log_prior).reshape(n_fix, 3, 3)
    finally:
        batches.set_shift(saved)
        problem.response_weight = saved_weight
    return out.reshape(n_fix, 9 * s * s)
