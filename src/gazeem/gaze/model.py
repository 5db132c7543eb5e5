"""``GazeEM``: joint inference of true gaze and receptive fields, one session at a time."""

from __future__ import annotations

import copy
import inspect
import logging
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from gazeem.device import cpu_model, resolve_device, resolve_dtype
from gazeem.em.engine import EMState, EStep, run_em
from gazeem.em.estep import normalize_log, prune_support, sample_support
from gazeem.em.mstep import maximize_weighted
from gazeem.errors import GazeemError, NotFittedError
from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.patches import gather_crops, lagged_frame_index
from gazeem.gaze.windows import Windows, expected_positions, make_windows, window_half_width
from gazeem.models.observation import TrackerModel, TrackerStats
from gazeem.models.prior import CellWeightsPrior, CountsPrior, GridPrior, UniformPrior
from gazeem.models.response import PoissonLN, ResponseModel

log = logging.getLogger("gazeem.fit")

#: fewest bins in fixations, and fewest fixations, that a fit accepts, and below which it
#: warns (the tracker's affine gain and offset are 6 parameters, 2 readings per fixation)
MIN_FIT_BINS = 20
MIN_FIT_FRACTION = 0.02
WARN_FIT_FRACTION = 0.25
MIN_FIXATIONS = 2
MIN_FIXATIONS_FOR_GAIN = 4
WARN_FIXATIONS_FOR_GAIN = 12
#: singular values of the fitted gain outside this range mean a wrong ppd
GAIN_SCALE_RANGE = (0.5, 2.0)


class TrackerGainWarning(UserWarning):
    """The fitted tracker gain points to a flipped or swapped axis, or a wrong ppd."""


_CHOICES = {
    "nonlinearity": ("exp", "softplus"),
    "offset": ("auto", "zero", "calibration"),
    "prior": ("uniform", "weights", "counts", "hmm"),
    "estep": ("exact", "mc", "fast"),
    "mstep": ("lbfgs", "adam"),
}


@dataclass(frozen=True)
class GazePosterior:
    """An E-step's result for the gaze model.

    ``log_q`` and ``resp_ll`` are ``(F, K)`` float64 over each fixation's window cells;
    ``draws`` holds Monte-Carlo sample counts ``(F, K)`` (``None`` in exact mode).
    """

    windows: Windows
    log_q: torch.Tensor
    log_marginal: torch.Tensor
    resp_ll: torch.Tensor
    draws: torch.Tensor | None


class GazeEM:
    """Grid-latent EM over true gaze, with a Poisson LN response model per unit.

    Parameters
    ----------
    patch_size
        Side ``P`` of the retinal patch that a receptive field covers, stimulus pixels.
    n_lags
        Stimulus frames per receptive field (lags 0..n_lags-1 bins).
    nonlinearity
        ``"exp"`` or ``"softplus"`` output of the LN model.
    l2, smooth
        Ridge and Laplacian-smoothness penalty strengths on the receptive fields.
    sigma_init
        Starting tracker noise SD per axis, stimulus pixels (the window uses it first).
    learn_sigma, learn_gain
        Refit σ and the affine gain ``A`` in closed form in each M-step.
    offset
        ``"zero"``: anchor ``b = 0`` (corrections are relative); ``"calibration"``: fit
        ``b`` with calibration fixations pinning it (requires ``calib_target``);
        ``"auto"``: calibration when the data have calibration fixations, else zero.
    prior
        ``"uniform"``, ``"weights"`` (fixed ``prior_weights`` over the grid) or
        ``"counts"`` (learned cell frequencies, the reference notes' ``z_sample``), or
        ``"hmm"``: a gaze cell per bin, linked over time by fixational drift and by the
        tracker's measured saccade displacements (:mod:`gazeem.gaze.temporal`).
    prior_weights
        ``(grid_rows, grid_cols)`` weights for ``prior="weights"``.
    prior_pseudocount
        Pseudo-count added to every cell for ``prior="counts"``.
    sigma_drift_init, sigma_sacc_init
        ``prior="hmm"``: starting SD of the drift step per bin and of the landing error
        about the tracker's measured saccade displacement, stimulus pixels per axis.
        ``sigma_sacc_init=inf`` (with ``learn_sigma_sacc=False``) restarts the chain
        independently at every fixation.
    learn_sigma_drift, learn_sigma_sacc
        Refit those SDs in each M-step (1-D search on the expected transitions).
    estep
        ``"exact"`` enumeration of the window, or ``"mc"``: Monte-Carlo EM drawing
        ``num_samples`` cells per fixation from q and restricting the next E-step's
        support to them.
    num_samples
        Draws per fixation in Monte-Carlo mode.
    fast_top_k
        ``estep="fast"`` (stationary noise stimuli only): the log-likelihood's linear term,
        summed over units, is one convolution per bin with the spike-weighted sum of the
        receptive fields; the Poisson term ``Σ exp(drive)``, nearly the same at every cell
        for such stimuli, is dropped; then the ``fast_top_k`` best cells of each fixation
        are rescored exactly and carry the posterior. Not valid for natural images, whose
        local statistics vary across the screen (see ``docs/performance.md``).
    window_k, window_min, window_max
        Window half-width ``clamp(ceil(window_k σ), window_min, window_max)`` cells.
    grid_margin_px
        The grid covers the stimulus extended by this many pixels on each side.
    mstep
        ``"lbfgs"`` (to convergence; default) or ``"adam"`` (``adam_steps`` steps).
    mstep_max_iter, adam_steps, adam_lr
        Budgets of the gradient M-step.
    prune_mass
        Posterior mass per fixation that the M-step may drop (smallest cells first).
    mstep_max_cells
        When a fixation's posterior still spreads over more cells than this (early
        iterations), L-BFGS fits the response on its ``mstep_max_cells`` most probable
        cells (renormalised). The exact expected log-likelihood over the whole pruned
        support is then compared before and after, and the step is halved until it rises
        (a generalised EM step; the objective still never falls). This bounds the
        M-step's many passes to that many cells per bin.
    tol, max_iter
        Convergence: stop when the objective changes by less than ``tol`` nats per bin.
    device, dtype
        ``"auto" | "cpu" | "cuda"``; ``"float32"`` (default; float64 accumulation) or ``"float64"``.
    chunk_mb, cache_mb
        Working memory per E-step chunk, and for caching M-step patches, MiB.
    random_state
        Seed for Monte-Carlo draws.
    frames_in_memory
        Load the stimulus into memory (``True``), read the frames each chunk needs from
        the (lazily opened) dataset (``False``), or decide by size (``"auto"``: in memory
        below 1 GiB). Reading lazily keeps an hour-long session's fit within a few GiB.
    response_model
        A custom :class:`~gazeem.models.response.ResponseModel` (fitted with the
        gradient M-step) instead of the built-in :class:`PoissonLN`.
    progress
        Show a tqdm bar per EM iteration.

    Attributes
    ----------
    sigma_, gain_, offset_
        Fitted tracker parameters (pixels; centred stimulus pixels, y down).
    sigma_drift_, sigma_sacc_, viterbi_
        ``prior="hmm"`` only: fitted step SDs (pixels) and the most probable gaze path
        ``(T, 2)`` stimulus pixels (NaN outside fixations).
    rf_, bias_, rf_initial_, bias_initial_
        Receptive fields ``(N, n_lags, P, P)`` and biases after EM and from the
        raw-trace fit.
    posterior_
        The final :class:`GazePosterior`.
    state_
        :class:`~gazeem.em.engine.EMState`: ``log_likelihood`` history, ``n_iter``, ``converged``.
    loglik_, n_iter_, converged_
        Shortcuts into ``state_``.
    """

    def __init__(
        self,
        *,
        patch_size: int = 16,
        n_lags: int = 1,
        nonlinearity: str = "exp",
        l2: float = 10.0,
        smooth: float = 1000.0,
        sigma_init: float = 3.0,
        learn_sigma: bool = True,
        learn_gain: bool = True,
        offset: str = "auto",
        prior: str = "uniform",
        prior_weights=None,
        prior_pseudocount: float = 1.0,
        sigma_drift_init: float = 0.5,
        sigma_sacc_init: float = 2.0,
        learn_sigma_drift: bool = True,
        learn_sigma_sacc: bool = True,
        estep: str = "exact",
        num_samples: int = 64,
        fast_top_k: int = 25,
        window_k: float = 4.0,
        window_min: int = 2,
        window_max: int = 40,
        grid_margin_px: int = 0,
        mstep: str = "lbfgs",
        mstep_max_iter: int = 100,
        adam_steps: int = 300,
        adam_lr: float = 0.02,
        prune_mass: float = 1e-6,
        mstep_max_cells: int = 32,
        tol: float = 1e-5,
        max_iter: int = 50,
        device: str = "auto",
        dtype: str = "float32",
        chunk_mb: int = 256,
        cache_mb: int = 1024,
        random_state: int = 0,
        frames_in_memory: str | bool = "auto",
        response_model: ResponseModel | None = None,
        progress: bool = False,
    ) -> None:
        params = {k: v for k, v in locals().items() if k != "self"}
        for k, v in params.items():
            setattr(self, k, v)

    # -- scikit-learn style parameter access ------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict:
        """Hyperparameters as given to ``__init__``."""
        return {k: getattr(self, k) for k in self._param_names()}

    def _check_params(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise GazeemError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        positive = {
            "patch_size": self.patch_size,
            "n_lags": self.n_lags,
            "sigma_init": self.sigma_init,
            "window_k": self.window_k,
            "num_samples": self.num_samples,
            "fast_top_k": self.fast_top_k,
            "chunk_mb": self.chunk_mb,
            "mstep_max_cells": self.mstep_max_cells,
        }
        for name, v in positive.items():
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise GazeemError(f"{name} must be a positive number, got {v!r}.")
        if self.window_min < 0 or self.window_max < self.window_min:
            raise GazeemError(
                f"need 0 <= window_min <= window_max, got {self.window_min}, {self.window_max}."
            )
        if self.frames_in_memory not in ("auto", True, False):
            raise GazeemError(
                f"frames_in_memory must be 'auto', True or False, got {self.frames_in_memory!r}."
            )
        if self.estep == "fast" and self.response_model is not None:
            raise GazeemError("estep='fast' needs the built-in PoissonLN response model.")
        if self.prior == "weights" and self.prior_weights is None:
            raise GazeemError(
                "prior='weights' needs prior_weights of shape (grid_rows, grid_cols)."
            )
        if self.prior == "hmm":
            if self.estep != "exact":
                raise GazeemError("prior='hmm' needs estep='exact'.")
            for name in ("sigma_drift_init", "sigma_sacc_init"):
                v = getattr(self, name)
                if not (isinstance(v, int | float) and v > 0 and not math.isnan(v)):
                    raise GazeemError(f"{name} must be a positive number, got {v!r}.")
            if math.isinf(self.sigma_sacc_init) and self.learn_sigma_sacc:
                raise GazeemError(
                    "sigma_sacc_init=inf (independent fixations) needs learn_sigma_sacc=False."
                )
        if not 0 <= self.prune_mass < 1:
            raise GazeemError(f"prune_mass must be in [0, 1), got {self.prune_mass}.")
        non_negative = {
            "l2": self.l2,
            "smooth": self.smooth,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "grid_margin_px": self.grid_margin_px,
            "cache_mb": self.cache_mb,
        }
        for name, v in non_negative.items():
            if isinstance(v, bool) or not (
                isinstance(v, int | float) and math.isfinite(v) and v >= 0
            ):
                raise GazeemError(f"{name} must be a finite number >= 0, got {v!r}.")

    # -- fitting -----------------------------------------------------------------------
    def fit(self, session: xr.Dataset) -> GazeEM:
        """Fit one session dataset (see ``docs/data-format.md``); returns ``self``."""
        self._check_params()
        t_start = time.perf_counter()
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype)
        in_memory = self.frames_in_memory
        if in_memory == "auto":
            in_memory = session["stimulus"].size * 4 < 2**30
        data = GazeData.from_dataset(session, device, dtype, frames_in_memory=bool(in_memory))
        where = str(session.encoding.get("source") or session.attrs.get("session", "session"))
        self._check_data(data, where)
        self._fit_data(data, session.attrs.get("session", "session"), where)
        self.gain_problem_ = self._check_gain(where)
        self.device_ = str(device)
        self.num_threads_ = torch.get_num_threads()
        self.cpu_ = cpu_model()
        self.wall_time_s_ = time.perf_counter() - t_start
        self.session_ = session
        return self

    def _check_data(self, data: GazeData, where: str) -> None:
        """Data-dependent checks: settings that the session cannot support."""
        rows, cols = data.geometry.shape
        if self.patch_size > min(rows, cols):
            raise GazeemError(
                f"{where}: field 'patch_size': {self.patch_size} px is larger than the "
                f"{cols}x{rows} px stimulus; a receptive field must fit inside it."
            )
        n_frames = data.frames.shape[0]
        if self.n_lags > n_frames:
            raise GazeemError(
                f"{where}: field 'n_lags': {self.n_lags} lags need at least as many stimulus "
                f"frames; the session has {n_frames}."
            )
        n_fit, n_bins = int(data.fit_bins.numel()), int(data.fixation.numel())
        if n_fit < MIN_FIT_BINS or n_fit < MIN_FIT_FRACTION * n_bins:
            raise GazeemError(
                f"{where}: field 'fixation': only {n_fit} of {n_bins} bins lie in fixations with a "
                f"valid eye trace (at least {MIN_FIT_BINS} and {MIN_FIT_FRACTION:.0%} are needed); "
                "check eye_valid, the blinks and ingest's min_valid_fraction."
            )
        need = MIN_FIXATIONS_FOR_GAIN if self.learn_gain else MIN_FIXATIONS
        if data.n_fixations < need:
            raise GazeemError(
                f"{where}: field 'fixation': {data.n_fixations} fixations are too few to fit the "
                f"tracker ({need} needed{' for its gain' if self.learn_gain else ''}); "
                + ("set learn_gain: false, or " if self.learn_gain else "")
                + "check the saccade detection (ingest's saccade_velocity_deg_s)."
            )
        notes = []
        if n_fit < WARN_FIT_FRACTION * n_bins:
            notes.append(
                f"only {n_fit} of {n_bins} bins ({n_fit / n_bins:.0%}) are in fixations with a "
                "valid eye trace; the fit uses those alone"
            )
        if self.learn_gain and data.n_fixations < WARN_FIXATIONS_FOR_GAIN:
            notes.append(
                f"{data.n_fixations} fixations determine the tracker's 6 affine parameters "
                "poorly; consider learn_gain: false"
            )
        for note in notes:
            log.warning("%s: %s", where, note)
        self.data_warnings_ = tuple(notes)

    def _check_gain(self, where: str) -> str:
        """The likely cause when the fitted gain cannot be a tracker's (``""`` when fine).

        A negative diagonal entry or determinant means a flipped axis; off-diagonal entries
        larger than the diagonal mean swapped axes; singular values outside
        ``GAIN_SCALE_RANGE`` mean a wrong ppd. A warning is issued; ``gazeem fit`` stops.
        """
        if not self.learn_gain:
            return ""
        a = np.asarray(self.gain_, dtype=np.float64)
        sv = np.linalg.svd(a, compute_uv=False)
        lo, hi = GAIN_SCALE_RANGE
        if abs(a[0, 1]) > abs(a[0, 0]) and abs(a[1, 0]) > abs(a[1, 1]):
            cause = (
                "the x and y axes look swapped in the source (the eye trace's columns are y, x); "
                "write them as x, y"
            )
        elif a[0, 0] < 0 or a[1, 1] < 0 or np.linalg.det(a) < 0:
            axis = "y" if a[1, 1] < 0 else "x"
            cause = (
                f"the {axis} axis of the eye trace looks flipped relative to the stimulus "
                "(y down in the source but read as y up, or the reverse); check the units and "
                "the axis direction of the eye trace in the source"
            )
        elif sv.min() < lo or sv.max() > hi:
            cause = (
                f"the tracker's scale is {sv.min():.2f}–{sv.max():.2f} times the stimulus's, "
                f"outside {lo}–{hi}: ppd in sessions.tsv (or screen_ppd) is probably wrong"
            )
        else:
            return ""
        msg = (
            f"{where}: field 'gain': the fitted tracker gain [[{a[0, 0]:.2f}, {a[0, 1]:.2f}], "
            f"[{a[1, 0]:.2f}, {a[1, 1]:.2f}]] is not a tracker's: {cause}. Fix the source or the "
            "session table and fit again (learn_gain: false only hides the problem)."
        )
        warnings.warn(msg, TrackerGainWarning, stacklevel=3)
        return msg

    def _fit_data(self, data: GazeData, name: str, where: str | None = None) -> None:
        rows, cols = data.geometry.shape
        m = int(self.grid_margin_px)
        grid = GazeGrid(-m, cols - 1 + m, -m, rows - 1 + m)
        offset_mode = self.offset
        if offset_mode == "auto":
            offset_mode = "calibration" if data.has_calibration else "zero"
        if offset_mode == "calibration" and not data.has_calibration:
            raise GazeemError("offset='calibration' needs calibration fixations (calib_target).")
        tracker = TrackerModel(
            sigma=float(self.sigma_init),
            learn_sigma=self.learn_sigma,
            learn_gain=self.learn_gain,
            learn_offset=offset_mode == "calibration",
        )
        if offset_mode == "calibration":
            _calibrate(tracker, data)
        z0 = expected_positions(data, tracker)
        # a reading just past the grid's edge is normal (the window is clamped inside);
        # one beyond it by more than the tracker's expected error means a wrong ppd or placement
        outside = ~torch.as_tensor(grid.contains(z0.numpy(), tol=0.5 + float(self.sigma_init)))
        if outside.any():
            i = int(torch.nonzero(outside)[0])
            raise GazeemError(
                f"{where or name}: field 'ppd': {int(outside.sum())} of {data.n_fixations} "
                "fixations have tracker "
                f"readings more than sigma_init={self.sigma_init} px outside the gaze grid "
                f"x∈[{grid.x0}, {grid.x1}], y∈[{grid.y0}, {grid.y1}] px "
                f"(e.g. fixation {data.fix_ids[i]} at ({z0[i, 0]:.1f}, {z0[i, 1]:.1f}) px). "
                "Check ppd and the stimulus placement, or widen grid_margin_px."
            )
        if self.prior in ("uniform", "hmm"):
            prior: GridPrior = UniformPrior(grid.n_cells)
        elif self.prior == "weights":
            w = torch.as_tensor(np.asarray(self.prior_weights), dtype=torch.float64)
            if tuple(w.shape) not in ((grid.height, grid.width), (grid.n_cells,)):
                raise GazeemError(
                    f"prior_weights has shape {tuple(w.shape)}; the grid is "
                    f"({grid.height}, {grid.width}) cells."
                )
            prior = CellWeightsPrior(w)
        else:
            prior = CountsPrior(grid.n_cells, self.prior_pseudocount)

        if self.response_model is not None:
            response = self.response_model.to(device=data.counts.device, dtype=data.counts.dtype)
        else:
            response = PoissonLN(
                data.n_units,
                self.patch_size,
                self.n_lags,
                nonlinearity=self.nonlinearity,
                l2=self.l2,
                smooth=self.smooth,
            ).to(device=data.counts.device, dtype=data.counts.dtype)
            response.initialize_bias(data.counts[data.fit_bins].mean(0))

        gen = torch.Generator(device="cpu").manual_seed(int(self.random_state))
        if self.prior == "hmm":
            from gazeem.gaze.temporal import HMMGazeProblem

            problem = HMMGazeProblem(self, data, grid, tracker, prior, response, gen)
        else:
            problem = _GazeProblem(self, data, grid, tracker, prior, response, gen)

        # initial fit: q on the raw tracker reading (nearest cell)
        problem.fit_response_on_positions(torch.round(z0).to(torch.int64))
        self.rf_initial_, self.bias_initial_ = _rf_and_bias(response)
        self.response_initial_ = copy.deepcopy(response)
        self.loglik_raw_ = problem.conditional_loglik(torch.round(z0).to(torch.int64))

        estep, state = run_em(
            problem,
            tol=self.tol,
            max_iter=self.max_iter,
            rel_slack=1e-6 if data.counts.dtype == torch.float64 else 2e-5,
            progress=self.progress,
            desc=f"EM {name}",
        )
        self.data_ = data
        self.grid_ = grid
        self.offset_mode_ = offset_mode
        self.tracker_ = tracker
        self.prior_ = prior
        self.response_ = response
        self.posterior_: GazePosterior = estep.posterior
        self.state_: EMState = state
        self.sigma_ = tracker.sigma
        self.gain_ = tracker.gain.numpy().copy()
        self.offset_ = tracker.offset.numpy().copy()
        self.rf_, self.bias_ = _rf_and_bias(response)
        self.loglik_ = np.asarray(state.log_likelihood)
        post = estep.posterior
        # response log-likelihood under the corrected gaze, averaged over the posterior
        q = post.log_q.exp()
        self.loglik_corrected_ = float((q * post.resp_ll.nan_to_num(neginf=0.0)).sum())
        if self.prior == "hmm":
            self.loglik_corrected_ = post.resp_expected
            self.sigma_drift_ = problem.sigma_drift
            self.sigma_sacc_ = problem.sigma_sacc
            self.viterbi_ = self._to_bins(problem.viterbi())
        self.n_spikes_ = int(data.counts[data.fit_bins].sum())
        self.n_iter_ = state.n_iter
        self.converged_ = state.converged

    # -- results -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "state_"):
            raise NotFittedError("this GazeEM is not fitted yet; call fit(session) first.")

    def fixation_summary(self) -> dict[str, np.ndarray]:
        """Posterior mean, SD and MAP per fixation (stimulus pixels), entropy and window mass."""
        self._check_fitted()
        return _summarize(self.posterior_, self.data_, self.tracker_)

    def gaze_per_bin(self) -> dict[str, np.ndarray]:
        """Per-bin posterior ``mean``, ``sd`` and ``map`` in stimulus pixels ``(T, 2)``.

        Bins outside fixations (saccades, blinks) are NaN. With ``prior="hmm"`` each bin
        has its own posterior and ``viterbi`` is added; otherwise a bin carries its
        fixation's.
        """
        self._check_fitted()
        post = self.posterior_
        if self.prior == "hmm":
            out = {k: self._to_bins(getattr(post, f"bin_{k}")) for k in ("mean", "sd", "map")}
            out["viterbi"] = self.viterbi_
            return out
        s = self.fixation_summary()
        fix = self.data_.fixation.cpu().numpy()
        out = {}
        for key in ("mean", "sd", "map"):
            arr = np.full((fix.size, 2), np.nan)
            arr[fix >= 0] = s[key][fix[fix >= 0]]
            out[key] = arr
        return out

    def _to_bins(self, per_fit_bin: np.ndarray) -> np.ndarray:
        """``(N, 2)`` values over ``data.fit_bins`` → ``(T, 2)``, NaN elsewhere."""
        arr = np.full((self.data_.fixation.numel(), 2), np.nan)
        arr[self.data_.fit_bins.cpu().numpy()] = per_fit_bin
        return arr

    def to_dataset(self) -> xr.Dataset:
        """The fit result as an :class:`xarray.Dataset` (``docs/data-format.md``)."""
        self._check_fitted()
        from gazeem.gaze.result import fit_to_dataset

        return fit_to_dataset(self)


class _GazeProblem:
    """The gaze model as seen by :func:`gazeem.em.engine.run_em`."""

    def __init__(self, est: GazeEM, data, grid, tracker, prior, response, gen) -> None:
        self.est = est
        self.data = data
        self.grid = grid
        self.tracker = tracker
        self.prior = prior
        self.response = response
        self.gen = gen
        self.exact = est.estep == "exact"  # Monte-Carlo and fast E-steps may lower the objective
        self.n_observations = int(data.fit_bins.numel())
        self._drawn_keys: torch.Tensor | None = None
        self.center_px = torch.as_tensor(data.geometry.center_px, dtype=torch.float64)

    # E-step ------------------------------------------------------------------------------
    def e_step(self) -> EStep:
        est = self.est
        win = self._windows(self._drawn_keys)
        pos = self._tracker_positions(win)
        dev = self.data.counts.device
        log_other = (
            self.tracker.log_prob(self.data.fix_reading, pos)
            + self.prior.log_prob(win.cell_index.cpu())
        ).to(dev)
        if est.estep == "fast":
            resp_ll = self.window_loglik_fast(win, log_other)
        else:
            resp_ll = self.window_loglik(win)
        log_joint = resp_ll + log_other
        log_joint = log_joint.masked_fill(~win.support, -torch.inf)
        log_q, log_marg = normalize_log(log_joint)
        draws = None
        if est.estep == "mc":
            draws = sample_support(log_q.cpu(), int(est.num_samples), self.gen).to(log_q.device)
            keys = (
                torch.arange(win.cell_index.shape[0], device=log_q.device)[:, None]
                * self.grid.n_cells
            )
            self._drawn_keys = (keys + win.cell_index)[draws > 0]
        post = GazePosterior(win, log_q, log_marg, resp_ll, draws)
        return EStep(post, float(log_marg.sum()))

    def _windows(self, drawn_keys: torch.Tensor | None = None) -> Windows:
        """Each fixation's window for the current tracker (half-width from its σ)."""
        est = self.est
        h = window_half_width(
            self.tracker.sigma, est.window_k, est.window_min, est.window_max, self.grid
        )
        return make_windows(self.data, self.tracker, self.grid, h, drawn_keys)

    def _chunk_bins(self, bytes_per_bin: int) -> int:
        return max(1, int(self.est.chunk_mb * 2**20 // max(bytes_per_bin, 1)))

    def _window_bin_bytes(self, win: Windows) -> int:
        """Working memory of one bin's window log-likelihood: crops, drive, output, frames."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        r = win.side - 1 + p
        k = win.side**2
        item = d.counts.element_size()
        frame_bytes = lags * d.frames.bytes_per_frame_read()  # each bin may need new frames
        return item * (3 * d.n_units * k + lags * r * r + 2 * k) + frame_bytes

    def _window_ll(self):
        """``(crops, counts, positions) -> (T, K)`` response log-likelihood over windows."""
        return getattr(self.response, "window_log_likelihood", None) or (
            lambda c, y, z: ResponseModel.window_log_likelihood(self.response, c, y, z)
        )

    def window_loglik(self, win: Windows) -> torch.Tensor:
        """``(F, K)`` float64 response log-likelihood summed over each fixation's bins."""
        d = self.data
        k = win.side**2
        chunk = self._chunk_bins(self._window_bin_bytes(win))
        acc = torch.zeros(win.cells.shape[:2], dtype=torch.float64, device=d.counts.device)
        window_ll = self._window_ll()
        with torch.no_grad():
            for bins, f, crops in self._window_crops(win, chunk):
                positions = win.cells[f].to(d.counts.dtype)
                ll = window_ll(crops, d.counts[bins], positions)
                acc.index_add_(0, f, ll.reshape(bins.numel(), k).to(torch.float64))
        return acc

    def _window_crops(self, win: Windows, chunk: int):
        """For each chunk of fitted bins: ``(bins, fixation, crops (T, lags, R, R))``."""
        d = self.data
        for s in range(0, d.fit_bins.numel(), chunk):
            bins = d.fit_bins[s : s + chunk]
            f = d.fixation[bins]
            yield bins, f, self._crops_of(win, bins, f)

    def _crops_of(self, win: Windows, bins: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """``(T, lags, R, R)`` crops of ``bins`` in fixations ``f``: each covers the
        fixation's window plus the patch around every cell."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        c = win.centers[f]
        top, left = c[:, 1] - win.half - p // 2, c[:, 0] - win.half - p // 2
        return gather_crops(
            d.frames, lagged_frame_index(d.frame, bins, lags), top, left, win.side - 1 + p
        )

    def window_loglik_fast(self, win: Windows, log_other: torch.Tensor) -> torch.Tensor:
        """``(F, K)``: approximate scores rank the cells, the best ``fast_top_k`` are exact.

        Cells outside the rescored set get ``-inf`` (no posterior mass).
        """
        d = self.data
        resp = self.response
        p, lags = resp.patch_size, resp.n_lags
        side = win.side
        r = side - 1 + p
        k = side * side
        item = d.counts.element_size()
        # grouped convolutions only run fast on large batches: at least 1024 bins a chunk
        frame_bytes = lags * d.frames.bytes_per_frame_read()
        chunk = max(
            1024, self._chunk_bins(item * (lags * r * r + 2 * k + lags * p * p) + frame_bytes)
        )
        approx = torch.zeros(win.cells.shape[:2], dtype=torch.float64, device=d.counts.device)
        rf = resp.rf.detach()
        with torch.no_grad():
            for bins, f, crops in self._window_crops(win, chunk):
                t = bins.numel()
                # Σ_n y_tn (k_n · x) = (Σ_n y_tn k_n) · x: one kernel per bin
                kern = (d.counts[bins] @ rf.flatten(1)).reshape(t, lags, p, p)
                lin = F.conv2d(crops.reshape(1, t * lags, r, r), kern, groups=t)
                approx.index_add_(0, f, lin.reshape(t, k).to(torch.float64))
        score = (approx + log_other).masked_fill(~win.support, -torch.inf)
        top = score.topk(min(int(self.est.fast_top_k), k), dim=1).indices
        keep = torch.zeros_like(win.support)
        keep.scatter_(1, top, True)
        keep &= win.support
        exact = torch.full(keep.shape, -torch.inf, dtype=torch.float64, device=keep.device)
        exact[keep] = 0.0
        with torch.no_grad():
            for x, b, z, pf, pk in self._pair_chunks(keep, win.cells):
                ll = resp.log_likelihood(x, self.data.counts[b], z).to(torch.float64)
                exact.index_put_((pf, pk), ll, accumulate=True)
        return exact

    def _tracker_positions(self, win: Windows) -> torch.Tensor:
        """``(F, K, 2)`` centred-pixel positions for the tracker term (targets at calibration)."""
        pos = win.cells.cpu().to(torch.float64) - self.center_px
        cal = torch.isfinite(self.data.fix_calib[:, 0])
        if cal.any():
            pos[cal] = self.data.fix_calib[cal][:, None, :].expand(-1, pos.shape[1], -1)
        return pos

    # M-step ------------------------------------------------------------------------------
    def m_step(self, estep: EStep) -> None:
        post: GazePosterior = estep.posterior
        win = post.windows
        if post.draws is not None:
            weights = post.draws.to(torch.float64) / float(self.est.num_samples)
            keep = post.draws > 0
        else:
            weights = post.log_q.exp()
            keep = prune_support(post.log_q, self.est.prune_mass)
        self._fit_response(win.cells, weights, keep)
        w_cpu = weights.cpu()
        self.tracker.m_step(
            TrackerStats.from_weighted(self.data.fix_reading, self._tracker_positions(win), w_cpu)
        )
        if self.prior.learnable:
            self.prior.m_step(win.cell_index.cpu(), w_cpu)

    def log_penalty(self) -> float:
        with torch.no_grad():
            return float(self.response.log_penalty()) + self.prior.log_penalty()

    def fit_response_on_positions(self, cells: torch.Tensor) -> None:
        """Fit the response model with q a point mass at ``cells (F, 2)`` (stimulus px)."""
        cells = cells.to(self.data.counts.device)[:, None, :]
        ones = torch.ones(cells.shape[:2], dtype=torch.float64, device=cells.device)
        self._fit_response(cells, ones, ones > 0)

    def conditional_loglik(self, cells: torch.Tensor) -> float:
        """``Σ_t log p(y_t | z = cells[f(t)])`` in nats under the current response model."""
        cells = cells.to(self.data.counts.device)[:, None, :]
        ones = torch.ones(cells.shape[:2], dtype=torch.float64, device=cells.device)
        total = 0.0
        with torch.no_grad():
            for x, y, z, w in self._pair_batches(cells, ones, ones > 0, cache=False)():
                total += float((w * self.response.log_likelihood(x, y, z)).sum())
        return total

    def _fit_response(self, cells: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor) -> None:
        est = self.est
        cap = int(est.mstep_max_cells)
        if int(keep.sum(1).max()) <= cap:
            self._maximize(self._pair_batches(cells, weights, keep, cache=True))
            return
        # broad posteriors: optimise on the most probable cells, then check exactly
        w_kept = torch.where(keep, weights, torch.zeros_like(weights))
        top = w_kept.topk(cap, dim=1)
        small = torch.zeros_like(keep).scatter_(1, top.indices, True) & keep
        w_small = torch.where(small, weights, torch.zeros_like(weights))
        w_small = w_small * (
            w_kept.sum(1, keepdim=True) / w_small.sum(1, keepdim=True).clamp_min(1e-300)
        )
        full = self._pair_batches(cells, weights, keep, cache=False)
        before = [p.detach().clone() for p in self.response.parameters()]
        q_before = self._expected_objective(full)
        self._maximize(self._pair_batches(cells, w_small, small, cache=True))
        after = [p.detach().clone() for p in self.response.parameters()]
        step = 1.0
        while True:
            q_after = self._expected_objective(full)
            if q_after >= q_before or step < 1 / 64:
                break
            step /= 2
            with torch.no_grad():
                for p, a, b in zip(self.response.parameters(), before, after, strict=True):
                    p.copy_(a + step * (b - a))
        if q_after < q_before:  # no improving step found: keep the old parameters
            with torch.no_grad():
                for p, a in zip(self.response.parameters(), before, strict=True):
                    p.copy_(a)
        log.debug(
            "capped M-step: Q %.6g -> %.6g (step %.3g)", q_before, max(q_after, q_before), step
        )

    def _maximize(self, batches) -> None:
        est = self.est
        info = maximize_weighted(
            self.response,
            batches,
            method=est.mstep,
            max_iter=est.mstep_max_iter,
            adam_steps=est.adam_steps,
            adam_lr=est.adam_lr,
        )
        log.debug("response M-step: %s", info)

    def _expected_objective(self, batches) -> float:
        """``Σ_pairs w · log p(y | x, z) + log_penalty`` at the current parameters (nats)."""
        total = 0.0
        with torch.no_grad():
            for x, y, z, w in batches():
                total += float((w * self.response.log_likelihood(x, y, z)).sum())
            total += float(self.response.log_penalty())
        return total

    def _pair_batch_size(self) -> int:
        """Pairs per chunk: patches, counts and, for lazily read frames, the frames they touch."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        per_pair = (
            d.counts.element_size() * (lags * p * p + d.n_units * 4)
            + lags * d.frames.bytes_per_frame_read()
        )
        return self._chunk_bins(per_pair)

    def _pair_blocks(self, keep: torch.Tensor):
        """Every (bin, kept cell) pair, a block of whole fixations at a time.

        Yields ``(bins, fixation, cell)`` index tensors ``(M_block,)``; a block holds at
        most one batch of pairs (or one fixation), so memory does not grow with the
        session even while posteriors are broad.
        """
        d = self.data
        n_fix = keep.shape[0]
        fb = d.fixation[d.fit_bins]  # sorted by fixation
        n_bins = torch.bincount(fb, minlength=n_fix)
        bin_start = torch.cumsum(n_bins, 0) - n_bins
        n_sup = keep.sum(1)
        cum = torch.cumsum(n_sup * n_bins, 0).cpu()
        batch = self._pair_batch_size()
        a = 0
        while a < n_fix:
            done = int(cum[a - 1]) if a else 0
            b = int(torch.searchsorted(cum, torch.tensor(done + batch), right=True))
            b = min(max(b, a + 1), n_fix)
            lo, hi = int(bin_start[a]), int(bin_start[b - 1] + n_bins[b - 1])
            bins = d.fit_bins[lo:hi]
            sup_f, sup_k = keep[a:b].nonzero(as_tuple=True)
            ns = torch.bincount(sup_f, minlength=b - a)
            start = torch.cumsum(ns, 0) - ns
            local = fb[lo:hi] - a
            reps = ns[local]
            first = torch.cumsum(reps, 0) - reps
            within = torch.arange(int(reps.sum()), device=bins.device) - first.repeat_interleave(
                reps
            )
            sidx = start[local].repeat_interleave(reps) + within
            yield bins.repeat_interleave(reps), sup_f[sidx] + a, sup_k[sidx]
            a = b

    def _pair_chunks(self, keep: torch.Tensor, cells: torch.Tensor):
        """Patches, bins, positions and (fixation, cell) indices of every kept pair, by chunk."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        batch = self._pair_batch_size()
        for bins_all, pf_all, pk_all in self._pair_blocks(keep):
            for s in range(0, bins_all.numel(), batch):
                b, pf, pk = bins_all[s : s + batch], pf_all[s : s + batch], pk_all[s : s + batch]
                z = cells[pf, pk]
                x = gather_crops(
                    d.frames,
                    lagged_frame_index(d.frame, b, lags),
                    z[:, 1] - p // 2,
                    z[:, 0] - p // 2,
                    p,
                )
                yield x, b, z.to(d.counts.dtype), pf, pk

    def _pair_batches(self, cells, weights, keep, cache: bool):
        """A callable yielding ``(x, y, z, w)`` batches over all (bin, kept cell) pairs."""
        d = self.data
        n_pairs = int(
            (keep.sum(1) * torch.bincount(d.fixation[d.fit_bins], minlength=keep.shape[0])).sum()
        )
        w_all = weights.to(d.counts.dtype)

        def make():
            for x, b, z, pf, pk in self._pair_chunks(keep, cells):
                yield x, b, z, w_all[pf, pk]

        return self._batches(make, n_pairs, cache)

    def _batches(self, make, n_pairs: int, cache: bool):
        """A callable over ``make()``'s ``(x, bins, z, w)``, yielding ``(x, counts, z, w)``.

        With ``cache``, and when ``n_pairs`` fit in ``cache_mb``, the batches are made once
        and kept. A kept pair holds its patch, its bin (counts are looked up, not copied:
        they would take more room than the patch), its position and its weight.
        """
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        per_pair = d.counts.element_size() * (lags * p * p + 3) + 8
        counts = d.counts
        if cache and n_pairs * per_pair <= self.est.cache_mb * 2**20:
            cached = list(make())
            return lambda: ((x, counts[b], z, w) for x, b, z, w in cached)
        return lambda: ((x, counts[b], z, w) for x, b, z, w in make())


def _calibrate(tracker: TrackerModel, data: GazeData) -> None:
    """Starting ``A`` and ``b`` from the calibration fixations alone (least squares)."""
    cal = torch.isfinite(data.fix_calib[:, 0])
    targets = data.fix_calib[cal][:, None, :]
    stats = TrackerStats.from_weighted(
        data.fix_reading[cal], targets, torch.ones(targets.shape[:2], dtype=torch.float64)
    )
    distinct = torch.unique(torch.round(data.fix_calib[cal]), dim=0).shape[0]
    init = TrackerModel(
        sigma=tracker.sigma,
        learn_sigma=False,
        learn_gain=tracker.learn_gain and distinct >= 3,
        learn_offset=True,
    )
    init.m_step(stats)
    tracker.gain, tracker.offset = init.gain, init.offset


def _rf_and_bias(response: torch.nn.Module) -> tuple[np.ndarray | None, np.ndarray | None]:
    rf = getattr(response, "rf", None)
    bias = getattr(response, "bias", None)
    return (
        None if rf is None else rf.detach().cpu().double().numpy().copy(),
        None if bias is None else bias.detach().cpu().double().numpy().copy(),
    )


def _summarize(post: GazePosterior, data: GazeData, tracker: TrackerModel) -> dict[str, np.ndarray]:
    """Per-fixation posterior summaries in stimulus pixels."""
    q = post.log_q.exp().cpu()
    pos = post.windows.cells.cpu().to(torch.float64)
    cal = torch.isfinite(data.fix_calib[:, 0])
    center = torch.as_tensor(data.geometry.center_px, dtype=torch.float64)
    if cal.any():
        pos[cal] = (data.fix_calib[cal] + center)[:, None, :].expand(-1, pos.shape[1], -1)
    mean = torch.einsum("fk,fki->fi", q, pos)
    var = torch.einsum("fk,fki->fi", q, pos**2) - mean**2
    amax = q.argmax(dim=1)
    map_ = pos[torch.arange(pos.shape[0]), amax]
    entropy = -(q * post.log_q.cpu().clamp_min(-1e300)).nan_to_num().sum(1)
    cells_c = post.windows.cells.cpu().to(torch.float64) - center
    tr = tracker.log_prob(data.fix_reading, cells_c).exp().sum(1) * abs(
        float(torch.linalg.det(tracker.gain))
    )
    return {
        "mean": mean.numpy(),
        "sd": var.clamp_min(0).sqrt().numpy(),
        "map": map_.numpy(),
        "entropy": entropy.numpy(),
        "window_mass": tr.numpy(),
    }
