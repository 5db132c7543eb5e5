"""``GazeEM``: joint inference of true gaze and receptive fields, one session at a time.

The estimator holds the hyperparameters (scikit-learn style: set in ``__init__``,
checked at ``fit`` against :data:`PARAMETER_CONSTRAINTS`, fitted attributes end in
``_``). ``fit`` hands the problems only the settings records they need
(:mod:`gazeem.gaze.settings`) and keeps what the fit learned (:class:`GazeFit`), not the
data.
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import torch
import xarray as xr

from gazeem.device import cpu_model, resolve_device, resolve_dtype
from gazeem.em.engine import EMState, run_em
from gazeem.errors import GazeemError, NotFittedError
from gazeem.gaze.anneal import anneal, choose_anneal, temperatures
from gazeem.gaze.build import build_cell_prior, build_response, build_tracker
from gazeem.gaze.checks import assess_gain, check_data, check_gain, choose_latent
from gazeem.gaze.data import GazeData
from gazeem.gaze.drift import DriftProblem
from gazeem.gaze.fit import GazeFit, build_fit, fall_back_to_trace, move_gauge, rf_and_bias
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.gauge import centre_initial_fields, subpixel_gauge
from gazeem.gaze.heldout import heldout_comparison
from gazeem.gaze.penalty import STARTS, em_with_cv_penalties
from gazeem.gaze.posterior import GazeMoves
from gazeem.gaze.settings import (
    PARAMETER_CONSTRAINTS,
    ProblemSettings,
    check_rules,
    check_settings,
)
from gazeem.gaze.split import split_hidden_saccades
from gazeem.gaze.subpixel import refine_subpixel
from gazeem.gaze.windows import expected_positions
from gazeem.models.response import ResponseModel


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
        Ridge and Laplacian-smoothness penalty strengths on the receptive fields;
        ``"cv"`` chooses a strength by cross-validation (:mod:`gazeem.gaze.penalty`).
    sigma_init
        Starting tracker noise SD per axis, stimulus pixels (the window uses it first).
    learn_sigma, learn_gain
        Refit σ and the affine gain ``A`` in closed form in each M-step.
    offset
        The translation gauge: ``"fields"``: the population's fields stay centred on the
        session's receptive-field region and ``b`` is learned; ``"calibration"``: fit
        ``b`` with calibration fixations pinning it (requires ``calib_target``);
        ``"zero"``: ``b = 0`` (corrections are relative); ``"auto"``: calibration when
        the data have calibration fixations, else fields.
    latent
        ``"fixation"``: one gaze cell per fixation (:mod:`gazeem.gaze.fixation`), or
        ``"bin"``: a gaze cell per bin, linked over time by fixational drift and by the
        tracker's measured saccade displacements (:mod:`gazeem.gaze.drift`); ``"auto"``:
        ``bin`` where the eye drifts within fixations more than the reading follows
        (:func:`gazeem.gaze.checks.choose_latent`; the fit records which and why).
    prior
        The cell prior: ``"uniform"``, ``"weights"`` (fixed ``prior_weights`` over the
        grid) or ``"counts"`` (learned cell frequencies, the reference notes'
        ``z_sample``). ``"hmm"`` (before ``latent``) is read as ``latent="bin"`` with a
        uniform prior, with a deprecation warning.
    prior_weights
        ``(grid_rows, grid_cols)`` weights for ``prior="weights"``.
    prior_pseudocount
        Pseudo-count added to every cell for ``prior="counts"``.
    sigma_drift_init, sigma_sacc_init
        ``latent="bin"``: starting SD of the drift step per bin and of the landing error
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
    tol, max_iter, gaze_tol
        Convergence: stop when the objective changes by less than ``tol`` nats per bin,
        or when the posterior mean gaze moved by less than ``gaze_tol`` px RMS at each of
        two iterations in a row (0 turns that rule off; ``docs/performance.md``).
    device, dtype
        ``"auto" | "cpu" | "cuda"``; ``"float32"`` (default; float64 accumulation) or ``"float64"``.
    chunk_mb, cache_mb
        Working memory per E-step chunk, and for caching M-step patches, MiB.
    random_state
        Seed for Monte-Carlo draws.
    heldout_check
        After EM, score the corrected gaze against the raw trace on held-out units and
        fixations (:mod:`gazeem.gaze.heldout`); where the correction is not supported, warn
        and report the tracker's own estimate with its error instead.
    split_fixations
        ``latent="fixation"``: after EM, cut in two each fixation whose spikes say the eye
        sat at two places (a saccade the reading did not show; :mod:`gazeem.gaze.split`),
        and run EM on.
    anneal, accelerate
        Start EM with tempered M-steps (:mod:`gazeem.gaze.anneal`; ``"auto"``: where frames
        are held within fixations); accelerate it by SQUAREM (:mod:`gazeem.em.squarem`).
    frames_in_memory
        Load the stimulus into memory (``True``), read the frames each chunk needs from
        the (lazily opened) dataset (``False``), or decide by size (``"auto"``: in memory
        below 1 GiB of float32, or of one-byte codes for a stimulus of at most 256 values).
        Reading lazily keeps an hour-long session's fit within a few GiB.
    response_model
        A custom :class:`~gazeem.models.response.ResponseModel` (fitted with the
        gradient M-step) instead of the built-in :class:`PoissonLN`.
    progress
        Show a tqdm bar per EM iteration.

    Attributes
    ----------
    sigma_, gain_, offset_
        Fitted tracker parameters (pixels; centred stimulus pixels, y down).
    gain_se_, gauge_shift_px_
        ``(2,)`` standard error of the gain's columns (a warning above 0.05), and the
        ``(x, y)`` px the gaze moved after EM to centre the fields exactly (``fields``).
    sigma_drift_, sigma_sacc_, viterbi_
        ``latent="bin"`` only: fitted step SDs (pixels) and the most probable gaze path
        ``(T, 2)`` stimulus pixels (NaN outside fixations).
    rf_, bias_, rf_initial_, bias_initial_
        Receptive fields ``(N, n_lags, P, P)`` and biases after EM and from the
        raw-trace fit.
    posterior_
        The final :class:`~gazeem.gaze.posterior.GazePosterior`.
    fit_
        :class:`~gazeem.gaze.fit.GazeFit`: what the fit learned (no data).
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
        l2: float | str = STARTS["l2"],
        smooth: float | str = STARTS["smooth"],
        sigma_init: float = 3.0,
        learn_sigma: bool = True,
        learn_gain: bool = True,
        offset: str = "auto",
        latent: str = "auto",
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
        gaze_tol: float = 0.01,
        device: str = "auto",
        dtype: str = "float32",
        chunk_mb: int = 256,
        cache_mb: int = 1024,
        random_state: int = 0,
        heldout_check: bool = True,
        split_fixations: bool = True,
        anneal: str | bool = "auto",
        accelerate: bool = False,
        frames_in_memory: str | bool = "auto",
        response_model: ResponseModel | None = None,
        progress: bool = False,
    ) -> None:
        self.patch_size, self.n_lags, self.nonlinearity = patch_size, n_lags, nonlinearity
        self.l2, self.smooth = l2, smooth
        self.sigma_init, self.learn_sigma, self.learn_gain = sigma_init, learn_sigma, learn_gain
        self.offset, self.latent = offset, latent
        self.prior, self.prior_weights = prior, prior_weights
        self.prior_pseudocount = prior_pseudocount
        self.sigma_drift_init, self.sigma_sacc_init = sigma_drift_init, sigma_sacc_init
        self.learn_sigma_drift, self.learn_sigma_sacc = learn_sigma_drift, learn_sigma_sacc
        self.estep, self.num_samples, self.fast_top_k = estep, num_samples, fast_top_k
        self.window_k, self.window_min, self.window_max = window_k, window_min, window_max
        self.grid_margin_px = grid_margin_px
        self.mstep, self.mstep_max_iter = mstep, mstep_max_iter
        self.adam_steps, self.adam_lr = adam_steps, adam_lr
        self.prune_mass, self.mstep_max_cells = prune_mass, mstep_max_cells
        self.tol, self.max_iter, self.gaze_tol = tol, max_iter, gaze_tol
        self.device, self.dtype = device, dtype
        self.chunk_mb, self.cache_mb = chunk_mb, cache_mb
        self.random_state = random_state
        self.heldout_check, self.split_fixations = heldout_check, split_fixations
        self.anneal, self.accelerate = anneal, accelerate
        self.frames_in_memory = frames_in_memory
        self.response_model, self.progress = response_model, progress

    # -- parameters (scikit-learn style) ------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [*PARAMETER_CONSTRAINTS, "response_model", "progress"]

    def get_params(self, deep: bool = True) -> dict:
        """Hyperparameters as given to ``__init__``."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> GazeEM:
        for k, v in params.items():
            if k not in self._param_names():
                raise GazeemError(f"GazeEM has no parameter {k!r}; see help(GazeEM).")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        """Each setting against :data:`PARAMETER_CONSTRAINTS`, then the rules between them."""
        check_settings(self.get_params())
        check_rules(self.get_params())

    def _latent_and_prior(self) -> tuple[str, str]:
        """``(latent, cell prior)``; reads the deprecated ``prior="hmm"`` as ``latent="bin"``."""
        if self.prior == "hmm":
            warnings.warn(
                "prior='hmm' is deprecated and will be removed in the next release: use "
                "latent='bin' (prior now means only the cell prior: uniform, weights, counts).",
                FutureWarning,
                stacklevel=4,
            )
            return "bin", "uniform"
        return self.latent, self.prior

    def problem_settings(self) -> ProblemSettings:
        """The records the problems receive (how each setting reaches the code using it)."""
        return ProblemSettings.from_params(self.get_params())

    # -- fitting -------------------------------------------------------------------------
    def fit(self, session: xr.Dataset) -> GazeEM:
        """Fit one session dataset (see ``docs/data-format.md``); returns ``self``."""
        self._check_params()
        latent, cell_prior = self._latent_and_prior()
        t_start = time.perf_counter()
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype)
        data = GazeData.from_dataset(session, device, dtype, self.frames_in_memory)
        where = str(session.encoding.get("source") or session.attrs.get("session", "session"))
        notes = check_data(
            data,
            where,
            patch_size=self.patch_size,
            n_lags=self.n_lags,
            learn_gain=self.learn_gain,
        )
        name = session.attrs.get("session", "session")
        reason = f"set: latent={latent}"
        if latent == "auto":
            latent, reason = choose_latent(data, self.estep, cell_prior)
        fit = self._fit_data(data, name, where, latent, cell_prior)
        fit.latent_reason = reason
        fit.provenance = {
            "device": str(device),
            "num_threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            "wall_time_s": time.perf_counter() - t_start,
            "data_warnings": assess_gain(fit, where, notes) if self.learn_gain else notes,
        }
        self._set_fitted(fit)
        self.gain_problem_ = check_gain(fit.gain, where) if self.learn_gain else ""
        return self

    def _fit_data(
        self, data: GazeData, name: str, where: str, latent: str, cell_prior: str
    ) -> GazeFit:
        grid, tracker, offset_mode, z0 = build_tracker(
            data,
            where,
            grid_margin_px=self.grid_margin_px,
            sigma_init=self.sigma_init,
            learn_sigma=self.learn_sigma,
            learn_gain=self.learn_gain,
            offset=self.offset,
        )
        tracker0 = copy.deepcopy(tracker)  # z0's, for the raw gaze of fixations cut later
        prior = build_cell_prior(cell_prior, grid, self.prior_weights, self.prior_pseudocount)
        response = build_response(
            data,
            self.response_model,
            patch_size=self.patch_size,
            n_lags=self.n_lags,
            nonlinearity=self.nonlinearity,
            l2=STARTS["l2"] if self.l2 == "cv" else self.l2,
            smooth=STARTS["smooth"] if self.smooth == "cv" else self.smooth,
        )
        gen = torch.Generator(device="cpu").manual_seed(int(self.random_state))
        problem_class = DriftProblem if latent == "bin" else FixationProblem
        problem = problem_class(data, grid, tracker, prior, response, gen, self.problem_settings())

        # initial fit: q on the raw tracker reading (nearest cell)
        problem.fit_response_on_positions(torch.round(z0).to(torch.int64))
        initial = rf_and_bias(response)
        self.response_initial_ = copy.deepcopy(response)
        loglik_raw = problem.conditional_loglik(torch.round(z0).to(torch.int64))
        if offset_mode == "fields":
            centre_initial_fields(problem)
        getattr(problem, "base", problem).holds_gauge = offset_mode == "fields"
        annealed, anneal_reason = choose_anneal(self.anneal, problem)
        n_anneal = anneal(problem, temperatures()) if annealed and self.max_iter else 0
        em = dict(tol=self.tol, max_iter=self.max_iter, progress=self.progress, desc=f"EM {name}")
        em.update(rel_slack=1e-6 if data.counts.dtype == torch.float64 else 2e-5)
        em.update(callback=(moves := GazeMoves(data)), accelerate=self.accelerate)
        em.update(settled=(lambda: moves.settled(self.gaze_tol)) if self.gaze_tol else None)
        estep, state = run_em(problem, **em)
        cv = tuple(k for k in ("smooth", "l2") if getattr(self, k) == "cv")
        cv = cv if latent == "fixation" else ()  # gazeem.gaze.penalty
        estep, state, choices = em_with_cv_penalties(problem, estep, state, em, cv)
        n_cut = 0
        if latent == "fixation" and self.split_fixations:
            problem, new, state, n_cut = split_hidden_saccades(problem, state, em, moves)
            if n_cut:  # the fixations changed: so did the raw gaze per fixation
                estep, data, z0 = new, problem.data, expected_positions(problem.data, tracker0)
        self.grid_, self.tracker_, self.prior_, self.response_ = grid, tracker, prior, response
        self.posterior_ = post = refine_subpixel(problem, estep.posterior)
        drift = {}
        if latent == "bin":
            drift = dict(viterbi=problem.viterbi(), sigma_drift=problem.sigma_drift)
            drift["sigma_sacc"] = problem.sigma_sacc
        fit = build_fit(
            latent=latent,
            offset_mode=offset_mode,
            data=data,
            post=post,
            tracker=tracker,
            response=response,
            initial=initial,
            state=state,
            loglik_raw=loglik_raw,
            gaze_change=moves.as_array(),
            **drift,
        )
        fit.anneal_steps, fit.anneal_reason, fit.n_split = n_anneal, anneal_reason, n_cut
        for k in ("smooth", "l2"):
            setattr(fit, k, getattr(response, k, None))
            setattr(fit, f"{k}_cv", choices.get(k))
        if offset_mode == "fields":
            # EM may let the fields drift along the gauge's flat direction: centre them exactly
            fit = move_gauge(fit, subpixel_gauge(response, tracker), tracker, response)
        if self.heldout_check:
            fit.heldout = heldout_comparison(problem, torch.round(z0).long(), fit.gaze["mean"])
            if fit.heldout is not None and not fit.heldout.supported:
                fit = fall_back_to_trace(fit, data, z0, self.sigma_init, where, tracker)
        return fit

    def _set_fitted(self, fit: GazeFit) -> None:
        state: EMState = fit.state
        self.fit_ = fit
        self.state_ = state
        self.latent_ = fit.latent
        self.offset_mode_ = fit.offset_mode
        self.sigma_, self.gain_, self.offset_ = fit.sigma, fit.gain, fit.offset
        self.gain_se_, self.gauge_shift_px_ = fit.gain_se, fit.gauge_shift
        self.rf_, self.bias_ = fit.rf, fit.bias
        self.rf_initial_, self.bias_initial_ = fit.rf_initial, fit.bias_initial
        self.loglik_ = np.asarray(state.log_likelihood)
        self.loglik_raw_, self.loglik_corrected_ = fit.loglik_raw, fit.loglik_corrected
        self.n_spikes_, self.n_iter_, self.converged_ = fit.n_spikes, state.n_iter, state.converged
        prov = fit.provenance
        self.device_, self.wall_time_s_ = prov["device"], prov["wall_time_s"]
        self.data_warnings_ = prov["data_warnings"]
        if fit.latent == "bin":
            self.sigma_drift_, self.sigma_sacc_ = fit.sigma_drift, fit.sigma_sacc
            self.viterbi_ = fit.gaze["viterbi"]

    # -- results -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "fit_"):
            raise NotFittedError("this GazeEM is not fitted yet; call fit(session) first.")

    def fixation_summary(self) -> dict[str, np.ndarray]:
        """Posterior mean, SD and MAP per fixation (stimulus pixels), entropy and window mass."""
        self._check_fitted()
        return self.fit_.fixations

    def gaze_per_bin(self) -> dict[str, np.ndarray]:
        """Per-bin posterior ``mean``, ``sd`` and ``map`` in stimulus pixels ``(T, 2)``.

        Bins outside fixations (saccades, blinks) are NaN. With ``latent="bin"`` each bin
        has its own posterior and ``viterbi`` is added; otherwise a bin carries its
        fixation's.
        """
        self._check_fitted()
        return self.fit_.gaze

    def to_dataset(self, session: xr.Dataset) -> xr.Dataset:
        """The fit result of ``session`` as an :class:`xarray.Dataset` (``docs/data-format.md``)."""
        self._check_fitted()
        from gazeem.gaze.result import fit_to_dataset

        return fit_to_dataset(self.fit_, session, self.get_params())
