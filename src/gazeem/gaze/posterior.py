"""What an E-step of the gaze model returns: one interface for both latents.

:class:`GazePosterior` is the per-fixation posterior over window cells that both latents
offer (for ``latent: bin``, the marginal of each fixation's middle bin), with its
summaries per fixation and per bin and the expected response log-likelihood, so that
code downstream (:mod:`gazeem.gaze.fit`) never asks which latent it has. The latents'
own posteriors extend it: :class:`gazeem.gaze.fixation.FixationPosterior` and
:class:`gazeem.gaze.drift.DriftPosterior`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from gazeem.gaze.data import GazeData
from gazeem.gaze.intervals import window_intervals
from gazeem.gaze.windows import Windows
from gazeem.models.observation import TrackerModel

log = logging.getLogger("gazeem.fit")

#: variance of a position spread evenly over one cell, px² per axis. The response sees the
#: patch cut at a cell, so within a cell the likelihood is flat: the continuous gaze given
#: a cell is uniform over it, and the posterior SD adds this to the spread between cells
#: (calibration fixations, pinned to a known target, add nothing)
CELL_VARIANCE = 1.0 / 12.0


def position_moments(q: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(N, 2)`` and per-axis variance ``(N, 2)`` (≥ 0) of positions ``pos (N, K, 2)``
    under weights ``q (N, K)`` summing to 1."""
    mean = torch.einsum("nk,nki->ni", q, pos)
    return mean, (torch.einsum("nk,nki->ni", q, pos**2) - mean**2).clamp_min(0)


@dataclass(frozen=True)
class GazePosterior:
    """``log_q (F, K)`` float64 over each fixation's window cells."""

    windows: Windows
    log_q: torch.Tensor

    def fixation_means(self, data: GazeData) -> np.ndarray:
        """Posterior mean gaze per fixation, ``(F, 2)`` stimulus pixels."""
        q = self.log_q.exp().cpu()
        pos = data.pin_calibration(self.windows.cells.cpu().to(torch.float64), centered=False)
        return torch.einsum("fk,fki->fi", q, pos).numpy()

    def per_fixation(self, data: GazeData, tracker: TrackerModel) -> dict[str, np.ndarray]:
        """Posterior ``mean``, ``sd``, ``map`` ``(F, 2)`` stimulus pixels, ``entropy``
        (nats) and ``window_mass`` (tracker-likelihood mass inside the window) per fixation."""
        q = self.log_q.exp().cpu()
        pos = data.pin_calibration(self.windows.cells.cpu().to(torch.float64), centered=False)
        mean, var = position_moments(q, pos)
        var = var + CELL_VARIANCE * (~data.is_calibration)[:, None]
        amax = q.argmax(dim=1)
        map_ = pos[torch.arange(pos.shape[0]), amax]
        entropy = -(q * self.log_q.cpu().clamp_min(-1e300)).nan_to_num().sum(1)
        center = torch.as_tensor(data.geometry.center_px, dtype=torch.float64)
        cells_c = self.windows.cells.cpu().to(torch.float64) - center
        tr = tracker.log_prob(data.fix_reading, cells_c).exp().sum(1) * abs(
            float(torch.linalg.det(tracker.gain))
        )
        return {
            "mean": mean.numpy(),
            "sd": var.sqrt().numpy(),
            "map": map_.numpy(),
            "entropy": entropy.numpy(),
            "window_mass": tr.numpy(),
        }

    def per_bin(self, data: GazeData, tracker: TrackerModel) -> dict[str, np.ndarray]:
        """Per-bin ``mean``, ``sd``, ``map`` ``(T, 2)`` and the central intervals ``lower``,
        ``upper`` ``(T, 2, L)`` (:mod:`gazeem.gaze.intervals`), stimulus pixels, NaN outside
        fixations.

        Here a bin carries its fixation's posterior plus the eye's motion within the
        fixation as the tracker follows it (:func:`within_fixation_motion`); a per-bin
        latent overrides this.
        """
        s = self.per_fixation(data, tracker)
        fix = data.fixation.cpu().numpy()
        motion, resid_var, _ = within_fixation_motion(data, tracker)
        # the residual variance is one number for every bin of a non-calibration fixation
        fix_var = np.where(data.is_calibration.numpy(), 0.0, resid_var.max(initial=0.0))
        s["lower"], s["upper"] = self.fixation_intervals(data, fix_var)
        out = {}
        for key in ("mean", "sd", "map", "lower", "upper"):
            arr = np.full((fix.size, *s[key].shape[1:]), np.nan)
            arr[fix >= 0] = s[key][fix[fix >= 0]]
            out[key] = arr
        for key in ("mean", "map"):
            out[key] = out[key] + motion
        for key in ("lower", "upper"):
            out[key] = out[key] + motion[..., None]
        out["sd"] = np.sqrt(out["sd"] ** 2 + resid_var[:, None])
        return out

    def fixation_intervals(self, data: GazeData, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Central intervals ``(lower, upper)``, each ``(F, 2, L)`` px, of every fixation's
        posterior with ``var (F,)`` px² of Gaussian spread added per axis."""
        return window_intervals(
            self.log_q.exp(),
            data.pin_calibration(self.windows.cells.cpu().to(torch.float64), centered=False),
            self.windows.side,
            data.is_calibration,
            torch.as_tensor(var),
        )

    @property
    def expected_response_loglik(self) -> float:
        """``E_q[log p(y | z)]`` summed over fitted bins, nats."""
        raise NotImplementedError


class GazeMoves:
    """How far the posterior mean gaze moves at each EM iteration (a ``run_em`` callback).

    ``as_array()`` is ``(iterations + 1, 2)``: the RMS and the largest move of any
    fixation's posterior mean since the previous E-step, px (NaN at iteration 0). It says
    whether an iteration still changes the answer, which the log-likelihood's change in
    nats does not (issue 19).
    """

    def __init__(self, data: GazeData) -> None:
        self.data, self.last, self.moves = data, None, []

    def __call__(self, iteration: int, estep) -> None:
        mean = estep.posterior.fixation_means(self.data)
        if self.last is None:
            self.moves.append((np.nan, np.nan))
        else:
            d = np.linalg.norm(mean - self.last, axis=1)
            self.moves.append((float(np.sqrt(np.mean(d**2))), float(d.max())))
            log.info(
                "iteration %d: gaze moved %.3g px RMS, %.3g px at most", iteration, *self.moves[-1]
            )
        self.last = mean

    def as_array(self) -> np.ndarray:
        return np.asarray(self.moves, dtype=np.float64).reshape(-1, 2)

    def settled(self, tol_px: float) -> bool:
        """True when the RMS move was below ``tol_px`` at each of the last two iterations
        (``run_em``'s ``settled``; ``tol_px = 0`` never settles)."""
        last = [rms for rms, _ in self.moves[1:][-2:]]
        return len(last) == 2 and max(last) < tol_px


def to_bins(data: GazeData, per_fit_bin: np.ndarray) -> np.ndarray:
    """``(N, 2, ...)`` values over ``data.fit_bins`` → ``(T, 2, ...)``, NaN elsewhere."""
    arr = np.full((data.fixation.numel(), *np.shape(per_fit_bin)[1:]), np.nan)
    arr[data.fit_bins.cpu().numpy()] = per_fit_bin
    return arr


#: px the motion of some bin must move, since the patches were placed, to place them again
MOTION_HYSTERESIS_PX = 0.05


@dataclass(frozen=True)
class MotionShift:
    """Where each bin's patch is moved: ``shift (T, 2)`` whole px, rounded from
    ``motion (T, 2)`` px."""

    shift: torch.Tensor
    motion: torch.Tensor


def motion_shift(motion: np.ndarray, previous: MotionShift | None) -> MotionShift:
    """``motion (T, 2)`` px rounded to whole pixels, unless no bin's motion has moved by
    more than ``MOTION_HYSTERESIS_PX`` since ``previous`` was placed: then ``previous``.

    The motion moves with the tracker's gain, which every M-step refits. Rounded afresh
    after every M-step, a change of gain too small to matter carries a few bins across a
    half-pixel, and their patches jump by a pixel: a change of the likelihood that no
    M-step chose. On a 10-minute noise session two such bins lowered the objective by 11
    nats at iteration 7 (issue 19). Placed again only when some bin moved by more than
    the margin, the patches follow the gain while it changes (every bin then rounded to
    its nearest pixel) and stay put once it has settled; a kept shift is at most
    0.5 + the margin px from the motion.
    """
    motion_t = torch.as_tensor(motion)
    if previous is not None and (motion_t - previous.motion).abs().max() <= MOTION_HYSTERESIS_PX:
        return previous
    return MotionShift(motion_t.round().to(torch.int64), motion_t)


def within_fixation_motion(
    data: GazeData, tracker: TrackerModel
) -> tuple[np.ndarray, np.ndarray, float]:
    """The eye's motion within each fixation, from the tracker: ``(motion (T, 2) px,
    residual variance (T,) px², weight w)``.

    The tracker's error changes slowly (it is constant within a fixation), so the
    reading's deviation from its fixation mean, ``d_t = A⁻¹(ẑ_t − ẑ̄_f)``, is the eye's
    drift plus per-sample jitter. Pooled over the session, lag-1 and lag-2 differences
    of ``d`` separate the two (a random walk of step variance ``s`` and white jitter of
    variance ``j``: ``v₁ = s + 2j``, ``v₂ = 2s + 2j``). The motion added to each bin is
    ``w · d_t`` with the Wiener weight ``w = M / (M + j)``, ``M`` the motion's variance
    about the fixation mean, and its error variance ``M (1 − w)`` joins the SD. Bins of
    calibration fixations, pinned to their target, and bins outside fixations get 0.
    """
    t = data.fixation.numel()
    motion, resid = np.zeros((t, 2)), np.zeros(t)
    fix = data.fixation.cpu().numpy()
    bins = data.fit_bins.cpu().numpy()
    cal = data.is_calibration.numpy()
    bins = bins[~cal[fix[bins]]]
    if bins.size < 3:
        return motion, resid, 0.0
    f = fix[bins]
    center = np.asarray(data.geometry.center_px, dtype=np.float64)
    reading = np.asarray(data.eye_px)[bins] - center
    dev = reading - data.fix_reading.numpy()[f]
    dev = np.linalg.solve(tracker.gain.numpy(), dev.T).T  # px of gaze, not of reading
    same1 = f[1:] == f[:-1]
    same2 = f[2:] == f[:-2]
    if same1.sum() < 2 or same2.sum() < 2:
        return motion, resid, 0.0
    v1 = float((np.diff(dev, axis=0)[same1] ** 2).mean()) / 2  # per axis
    v2 = float(((dev[2:] - dev[:-2])[same2] ** 2).mean()) / 2
    jitter = max((2 * v1 - v2) / 2, 0.0)
    m = max(float((dev**2).mean()) / 2 - jitter, 0.0)
    w = m / (m + jitter) if m + jitter > 0 else 0.0
    motion[bins] = w * dev
    resid[bins] = m * (1 - w)
    return motion, resid, w
