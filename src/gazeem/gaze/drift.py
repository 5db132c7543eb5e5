"""``latent: bin``: the gaze model with a per-bin latent linked over time (fixational drift).

Each fitted bin has its own gaze cell in its fixation's window. Within a fixation the
eye drifts (Gaussian random walk, ``σ_drift`` px per bin); a saccade moves it by the
tracker's measured displacement between the fixations' mean readings, give or take
``σ_sacc``; after a blink or an invalid stretch the chain restarts from the window's
prior. The tracker term on a fixation's mean reading is applied at its middle bin,
so with ``σ_drift → 0`` and a reset at every saccade this is the per-fixation model.
The E-step is :class:`gazeem.gaze.hmm.GridHMM`'s forward–backward; the M-step fits the
response on each bin's marginal, the tracker on the middle bins' marginals, and the
two step SDs by a 1-D search on the expected transitions. The windows, crops, tracker
terms and response M-step are the per-fixation problem's, used by composition.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from gazeem.em.engine import EStep
from gazeem.em.estep import prune_support
from gazeem.gaze.data import GazeData, GazeGrid, invalid_between
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.hmm import DRIFT, RESET, SACCADE, Chain, FBResult, GridHMM
from gazeem.gaze.intervals import LEVELS, window_intervals
from gazeem.gaze.posterior import CELL_VARIANCE, GazePosterior, position_moments, to_bins
from gazeem.gaze.settings import ProblemSettings
from gazeem.gaze.windows import Windows, expected_positions
from gazeem.models.observation import TrackerModel, TrackerStats
from gazeem.models.prior import GridPrior

log = logging.getLogger("gazeem.fit")

SIGMA_MIN = 1e-2  # px; below this the drift kernel is the identity on a 1-px grid


@dataclass(frozen=True)
class DriftPosterior(GazePosterior):
    """The per-bin E-step's result; ``log_q`` is each fixation's middle-bin marginal.

    Per-bin arrays run over the fitted bins (``data.fit_bins`` order): ``bin_mean``,
    ``bin_sd``, ``bin_map`` ``(N, 2)`` stimulus pixels; ``cells`` ``(N, m)`` the window
    cells kept for the M-step and ``weights`` their renormalised marginal mass
    (0: padding); ``resp_expected`` the expected response log-likelihood (nats).
    """

    bin_mean: np.ndarray = None
    bin_sd: np.ndarray = None
    bin_map: np.ndarray = None
    bin_lower: np.ndarray = None
    bin_upper: np.ndarray = None
    cells: torch.Tensor = None
    weights: torch.Tensor = None
    fb: FBResult = None
    resp_expected: float = 0.0
    dropped_mass: float = 0.0

    def per_bin(self, data: GazeData, tracker: TrackerModel) -> dict[str, np.ndarray]:
        """Each bin's own posterior ``mean``, ``sd``, ``map`` ``(T, 2)`` and central intervals
        ``lower``, ``upper`` ``(T, 2, L)``, stimulus pixels."""
        keys = ("mean", "sd", "map", "lower", "upper")
        return {k: to_bins(data, getattr(self, f"bin_{k}")) for k in keys}

    @property
    def expected_response_loglik(self) -> float:
        return self.resp_expected


class DriftProblem:
    """The per-bin gaze model as seen by :func:`gazeem.em.engine.run_em`."""

    exact = True

    def __init__(
        self,
        data: GazeData,
        grid: GazeGrid,
        tracker: TrackerModel,
        cell_prior: GridPrior,
        response: torch.nn.Module,
        gen: torch.Generator | None,
        settings: ProblemSettings,
    ) -> None:
        self.base = FixationProblem(data, grid, tracker, cell_prior, response, gen, settings)
        self.data, self.tracker, self.cell_prior, self.grid = data, tracker, cell_prior, grid
        self.response, self.settings = response, settings
        self.batches = self.base.batches
        self.n_observations = self.base.n_observations
        drift = settings.drift
        self.sigma_drift = float(drift.sigma_drift_init)
        self.sigma_sacc = float(drift.sigma_sacc_init)
        d = self.data
        fb = d.fixation[d.fit_bins].cpu()
        n_bins = torch.bincount(fb, minlength=d.n_fixations)
        start = torch.cumsum(n_bins, 0) - n_bins
        self.group = fb.to(d.counts.device)
        #: per chain position, the fixation whose middle bin it is (where the tracker term
        #: sits), else -1
        self.mid_of = torch.full((fb.numel(),), -1, dtype=torch.int64)
        self.mid_of[start + n_bins // 2] = torch.arange(d.n_fixations)
        self.mid_of = self.mid_of.to(d.counts.device)
        bins = d.fit_bins.cpu().numpy()
        # an invalid sample strictly between two consecutive fitted bins: a blink
        gap_invalid = invalid_between(d.eye_px, bins[:-1], bins[1:])
        new_fix = (fb[1:] != fb[:-1]).numpy()
        kind = np.full(bins.size, DRIFT, dtype=np.int64)
        kind[0] = RESET
        reset = gap_invalid | (new_fix & math.isinf(self.sigma_sacc))
        kind[1:][new_fix] = SACCADE
        kind[1:][new_fix & reset] = RESET
        self.kind = torch.from_numpy(kind).to(d.counts.device)

    # the per-fixation problem's parts ----------------------------------------------------
    def fit_response_on_positions(self, cells: torch.Tensor) -> None:
        self.base.fit_response_on_positions(cells)

    def conditional_loglik(self, cells: torch.Tensor) -> float:
        return self.base.conditional_loglik(cells)

    def log_penalty(self) -> float:
        return self.base.log_penalty()

    def recentre_fields(self) -> tuple[int, int]:
        return self.base.recentre_fields()

    def parameter_vector(self) -> torch.Tensor:
        """The per-fixation problem's, then ``log`` of the drift and saccade SDs (an
        infinite saccade SD, a reset at every saccade, is left out: it is not fitted)."""
        steps = [self.sigma_drift] + ([self.sigma_sacc] if math.isfinite(self.sigma_sacc) else [])
        logs = torch.tensor([math.log(x) for x in steps], dtype=torch.float64)
        return torch.cat([self.base.parameter_vector(), logs])

    def set_parameter_vector(self, v: torch.Tensor) -> int:
        i = self.base.set_parameter_vector(v)
        self.sigma_drift = max(math.exp(float(v[i])), SIGMA_MIN)
        if math.isfinite(self.sigma_sacc):
            self.sigma_sacc = max(math.exp(float(v[i + 1])), SIGMA_MIN)
            return i + 2
        return i + 1

    # E-step ------------------------------------------------------------------------------
    def chain(self, win: Windows) -> Chain:
        """The chain for the current windows and tracker (saccade shifts depend on both)."""
        z = expected_positions(self.data, self.tracker).to(win.centers.device)
        c = win.centers.to(torch.float64)
        g = self.group
        prev = torch.cat([g[:1], g[:-1]])
        e = (c[g] - c[prev]) - (z[g] - z[prev])  # (x, y): centres' move minus the tracker's
        shift = torch.where((self.kind == SACCADE)[:, None], e.flip(1), 0.0)
        log_init = self.cell_prior.log_prob(win.cell_index.cpu()).to(c.device)
        return Chain(win.side, self.kind, shift, g, log_init)

    def _emission_fn(self, win: Windows, cache: bool):
        """``emission(lo, hi)``: response log-likelihood per bin and cell, plus the tracker
        term at middle bins, ``-inf`` off the support; and the tracker term ``(F, K)``."""
        d = self.data
        dev = d.counts.device
        self.batches.set_shift(None)  # the chain's states carry the motion themselves
        pos = self.base.tracker_positions(win)
        log_tr = self.tracker.log_prob(d.fix_reading, pos).to(dev)
        mid_of = self.mid_of
        window_ll = self.base.window_ll()
        store: dict = {}

        def emission(lo: int, hi: int) -> torch.Tensor:
            if (lo, hi) in store:
                return store[(lo, hi)]
            bins = d.fit_bins[lo:hi]
            f = self.group[lo:hi]
            with torch.no_grad():
                shared = self._shared_crops(bins, f)
                if shared is None:
                    crops = self.batches.crops_of(win, bins, f)
                    ll = window_ll(crops, d.counts[bins], win.cells[f].to(d.counts.dtype))
                else:  # held frames: a crop per run of bins that see the same frames
                    first, row = shared
                    crops = self.batches.crops_of(win, bins[first], f[first])
                    ll = self.response.shared_window_log_likelihood(crops, d.counts[bins], row)
            out = self.base.weighted(ll.reshape(hi - lo, -1).to(torch.float64), bins)
            if self.base.temperature != 1.0:
                out = out / self.base.temperature
            m = mid_of[lo:hi]
            at = m >= 0
            out[at] += log_tr[m[at]]
            out = out.masked_fill(~win.support[f], -torch.inf)
            if cache:
                store[(lo, hi)] = out
            return out

        return emission, log_tr

    def _shared_crops(self, bins: torch.Tensor, f: torch.Tensor):
        """``(first, row)``: which of ``bins`` (chain positions with windows ``f``) start a
        run of the same frames in the same window, and each bin's run; ``None`` where
        the response cannot share crops or sharing would not halve them (the chain's
        states carry the motion: no shift, :meth:`_emission_fn`)."""
        return self.batches.shared_rows(bins, f)

    @cached_property
    def _session_runs(self):
        """:meth:`_shared_crops` of every chain position: fixed for the session."""
        return self._shared_crops(self.data.fit_bins, self.group)

    def _pair_batches(self, rows: torch.Tensor, xy: torch.Tensor, w: torch.Tensor):
        """The M-step's pairs: chain positions ``rows (M,)`` at cells ``xy (M, 2)`` with
        posterior weights ``w (M,)``. Where frames are held, the pairs of one run (the
        same frames in one window, :meth:`_shared_crops`) at one cell are one pair of
        weight ``Σ w`` and counts ``Σ w y / Σ w``: the same expected log-likelihood up
        to its ``log y!`` terms, which no parameter changes, with one patch cut."""
        d = self.data
        bins = d.fit_bins.cpu()[rows]
        shared = self._session_runs
        if shared is None:
            return self.batches.sparse_pair_batches(bins, xy, w, cache=True)
        first, run = shared
        keys = torch.stack([run.cpu()[rows], xy[:, 0], xy[:, 1]], 1)
        uniq, inv = torch.unique(keys, dim=0, return_inverse=True)
        w64 = w.to(torch.float64)
        total = torch.zeros(uniq.shape[0], dtype=torch.float64).index_add_(0, inv, w64)
        y = d.counts.cpu()[bins].to(torch.float64) * w64[:, None]
        mean = torch.zeros(uniq.shape[0], y.shape[1], dtype=torch.float64).index_add_(0, inv, y)
        mean = (mean / total[:, None]).to(d.counts)
        run_bin = d.fit_bins.cpu()[first.cpu()]
        return self.batches.sparse_pair_batches(
            run_bin[uniq[:, 0]], uniq[:, 1:], total, cache=True, counts=mean
        )

    def _emissions_fit(self, win: Windows) -> bool:
        """Whether every bin's float64 emissions fit in ``cache_mb`` (then kept, not redone)."""
        return self.settings.memory.fits_cache(self.kind.numel() * win.side**2 * 8)

    def _chunk(self, win: Windows) -> int:
        # the window log-likelihood plus float64 α̂, β̂, ê, emission, γ and a temporary
        return self.batches.chunk_bins(self.batches.window_bin_bytes(win) + 8 * 6 * win.side**2)

    def hmm(self) -> GridHMM:
        return GridHMM(self._chain, self.sigma_drift, self.sigma_sacc)

    def e_step(self) -> EStep:
        mstep, memory = self.settings.mstep, self.settings.memory
        d = self.data
        win = self.base.windows()
        self._chain = self.chain(win)
        n = self.kind.numel()
        k = win.side**2
        cache = self._emissions_fit(win)
        emission, log_tr = self._emission_fn(win, cache)
        mid_of = self.mid_of
        pos = self.base.tracker_positions(win) + self.base.center_px  # (F, K, 2) stimulus px
        pos = pos.to(d.counts.device)
        cap = min(k, int(mstep.max_cells))
        bin_mean = torch.empty(n, 2, dtype=torch.float64)
        bin_sd = torch.empty(n, 2, dtype=torch.float64)
        bin_map = torch.empty(n, 2, dtype=torch.float64)
        bin_lower = np.empty((n, 2, len(LEVELS)))
        bin_upper = np.empty((n, 2, len(LEVELS)))
        cells = torch.zeros(n, cap, dtype=torch.int64)
        weights = torch.zeros(n, cap, dtype=torch.float64)
        gamma_fix = torch.zeros(d.n_fixations, k, dtype=torch.float64)
        acc = {"resp": 0.0, "dropped": 0.0}

        def on_marginals(lo, hi, gamma, emis):
            f = self.group[lo:hi]
            p_ = pos[f]  # (n, K, 2)
            mean, var = position_moments(gamma, p_)
            bin_mean[lo:hi] = mean.cpu()
            cell = CELL_VARIANCE * (~self.data.is_calibration.to(f.device)[f])[:, None]
            bin_sd[lo:hi] = (var + cell).sqrt().cpu()
            bin_map[lo:hi] = p_[torch.arange(hi - lo), gamma.argmax(1)].cpu()
            bin_lower[lo:hi], bin_upper[lo:hi] = window_intervals(
                gamma, p_, win.side, self.data.is_calibration[f.cpu()]
            )
            m = mid_of[lo:hi]
            at = m >= 0
            gamma_fix[m[at].cpu()] = gamma[at].cpu()
            resp = emis.clone()
            resp[at] -= log_tr[m[at]]
            acc["resp"] += float((gamma * resp.nan_to_num(neginf=0.0)).sum())
            keep = prune_support(gamma.clamp_min(1e-300).log(), mstep.prune_mass)
            g_kept = torch.where(keep, gamma, 0.0)
            top = g_kept.topk(cap, dim=1)
            kept_mass = top.values.sum(1, keepdim=True)
            acc["dropped"] = max(acc["dropped"], float(1 - kept_mass.min()))
            cells[lo:hi] = top.indices.cpu()
            weights[lo:hi] = (top.values / kept_mass.clamp_min(1e-300)).cpu()

        fb = self.hmm().forward_backward(
            emission,
            self._chunk(win),
            on_marginals,
            pair_stats=self.settings.drift.learn_sigma_drift
            or self.settings.drift.learn_sigma_sacc,
            keep_forward=cache and memory.fits_cache(3 * n * k * 8),
        )
        post = DriftPosterior(
            windows=win,
            log_q=gamma_fix.log().to(d.counts.device),
            bin_mean=bin_mean.numpy(),
            bin_sd=bin_sd.numpy(),
            bin_map=bin_map.numpy(),
            bin_lower=bin_lower,
            bin_upper=bin_upper,
            cells=cells,
            weights=weights,
            fb=fb,
            resp_expected=acc["resp"],
            dropped_mass=acc["dropped"],
        )
        return EStep(post, fb.log_marginal)

    # M-step ------------------------------------------------------------------------------
    def m_step(self, estep: EStep) -> None:
        drift = self.settings.drift
        post: DriftPosterior = estep.posterior
        win = post.windows
        d = self.data
        if post.dropped_mass > self.settings.mstep.prune_mass:
            log.debug(
                "HMM M-step on the %d most probable cells per bin (up to %.3g of the mass "
                "left out)",
                post.cells.shape[1],
                post.dropped_mass,
            )
        nz = post.weights > 0
        rows = torch.nonzero(nz, as_tuple=True)[0]
        xy = win.cells.cpu()[self.group.cpu()[rows], post.cells[nz]]
        pairs = self._pair_batches(rows, xy, post.weights[nz])
        self.base.maximize(pairs)
        self.tracker.m_step(
            TrackerStats.from_weighted(
                d.fix_reading, self.base.tracker_positions(win), post.log_q.exp().cpu()
            )
        )
        side = float(win.side)
        if drift.learn_sigma_drift:
            self.sigma_drift = post.fb.drift.fit_sigma(SIGMA_MIN, side)
        if drift.learn_sigma_sacc and post.fb.saccade.sq.numel():
            self.sigma_sacc = post.fb.saccade.fit_sigma(0.1, 10 * side)
        log.debug("sigma_drift %.4g px, sigma_sacc %.4g px", self.sigma_drift, self.sigma_sacc)
        if self.base.gauge_held:
            self.base.hold_gauge(pairs, post.log_q.exp().cpu(), win)
        self.projection_loss = self.base.projection_loss

    # results -----------------------------------------------------------------------------
    def viterbi(self) -> np.ndarray:
        """``(N, 2)`` stimulus-pixel cells of the most probable path (fitted bins)."""
        win = self.base.windows()
        self._chain = self.chain(win)
        emission, _ = self._emission_fn(win, cache=self._emissions_fit(win))
        path = self.hmm().viterbi(emission, self._chunk(win))
        pos = self.base.tracker_positions(win) + self.base.center_px
        return pos[self.group.cpu(), path].numpy()
