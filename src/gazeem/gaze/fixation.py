"""``latent: fixation``: one gaze cell per fixation, as seen by :func:`gazeem.em.run_em`.

The E-step scores every cell of each fixation's window with the response model (one
batched convolution per chunk of bins), the tracker and the cell prior, and normalises
in log space. The M-step refits the response on the posterior-weighted (bin, cell)
pairs, then the tracker and a learnable prior in closed form. The per-bin latent
(:mod:`gazeem.gaze.drift`) uses this problem's helpers by composition.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gazeem.em.engine import EStep
from gazeem.em.estep import normalize_log, prune_support, sample_support
from gazeem.em.mstep import maximize_weighted
from gazeem.gaze.batches import Batches
from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.gauge import energy_centroid, subpixel_gauge
from gazeem.gaze.posterior import GazePosterior, motion_shift, within_fixation_motion
from gazeem.gaze.settings import ProblemSettings
from gazeem.gaze.window_mstep import WindowObjective
from gazeem.gaze.windows import Windows, make_windows, window_half_width
from gazeem.models.observation import TrackerModel, TrackerStats
from gazeem.models.prior import GridPrior
from gazeem.models.response import ResponseModel

log = logging.getLogger("gazeem.fit")

#: the response M-step by windows (:mod:`gazeem.gaze.window_mstep`) where it applies.
#: Off: measured against the pair cache it was 2x slower on noise and 7.6x on
#: photographs (docs/performance.md, "The M-step by windows"); kept, exact and tested,
#: for the GPU measurement and for dense posteriors in long sessions
WINDOW_MSTEP = False
#: hold the translation gauge after every M-step where ``holds_gauge`` asks for it; off
#: only to measure what it saves (``benchmarks/gauge.py``)
HOLD_GAUGE = True
#: score each bin at its fixation's cell moved by the eye's motion within the fixation, as
#: the tracker follows it (:meth:`FixationProblem.follow_motion`); ``False`` for the
#: side-by-side benchmark
FOLLOW_MOTION = True


@dataclass(frozen=True)
class FixationPosterior(GazePosterior):
    """The per-fixation E-step's result.

    ``log_marginal (F,)`` is each fixation's log evidence, ``resp_ll (F, K)`` float64 the
    response log-likelihood of each window cell; ``draws (F, K)`` Monte-Carlo sample
    counts (``None`` in exact and fast modes).
    """

    log_marginal: torch.Tensor = None
    resp_ll: torch.Tensor = None
    draws: torch.Tensor | None = None

    @property
    def expected_response_loglik(self) -> float:
        q = self.log_q.exp()
        return float((q * self.resp_ll.nan_to_num(neginf=0.0)).sum())


class FixationProblem:
    """The per-fixation gaze model: data, grid, the three models and the settings."""

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
        self.data = data
        self.grid = grid
        self.tracker = tracker
        self.cell_prior = cell_prior
        self.response = response
        self.gen = gen
        self.settings = settings
        self.batches = Batches(data, response, settings.memory)
        # Monte-Carlo and fast E-steps may lower the objective
        self.exact = settings.estep.mode == "exact"
        self.n_observations = int(data.fit_bins.numel())
        self._drawn_keys: torch.Tensor | None = None
        self.center_px = torch.as_tensor(data.geometry.center_px, dtype=torch.float64)
        #: ``(T,)`` weight of each bin's response log-likelihood in the E-step (``None``: 1);
        #: 0 leaves a bin's spikes out (:mod:`gazeem.gaze.heldout` infers gaze without them)
        self.response_weight: torch.Tensor | None = None
        #: ``offset: fields``: after every M-step, centre the fields exactly and move ``b``
        #: with them (:meth:`hold_gauge`), so that EM does not creep along the translation
        self.holds_gauge = False
        #: what the last gauge step cost in the M-step's objective, nats (``run_em`` reads it)
        self.projection_loss = 0.0
        #: the E-step scores ``log p(y | z) / temperature`` (annealing, :mod:`.anneal`; 1: exact)
        self.temperature = 1.0

    # E-step ------------------------------------------------------------------------------
    def e_step(self) -> EStep:
        mode = self.settings.estep.mode
        self.follow_motion()
        win = self.windows(self._drawn_keys)
        log_other = self.log_other(win).to(self.data.counts.device)
        if mode == "fast":
            resp_ll = self.window_loglik_fast(win, log_other)
        else:
            resp_ll = self.window_loglik(win)
        if self.temperature != 1.0:
            resp_ll = resp_ll / self.temperature
        log_joint = resp_ll + log_other
        log_joint = log_joint.masked_fill(~win.support, -torch.inf)
        log_q, log_marg = normalize_log(log_joint)
        draws = None
        if mode == "mc":
            n = int(self.settings.estep.num_samples)
            draws = sample_support(log_q.cpu(), n, self.gen).to(log_q.device)
            keys = (
                torch.arange(win.cell_index.shape[0], device=log_q.device)[:, None]
                * self.grid.n_cells
            )
            self._drawn_keys = (keys + win.cell_index)[draws > 0]
        post = FixationPosterior(win, log_q, log_marg, resp_ll, draws)
        return EStep(post, float(log_marg.sum()))

    def follow_motion(self) -> None:
        """Let each bin's patch follow the eye's motion within its fixation.

        The latent of a fixation is then where the fixation sits (the tracker's error, which
        changes slowly, is constant over it), and bin ``t`` is scored at that cell moved by
        ``w · d_t`` px, the tracker's reading about the fixation's mean, Wiener-weighted
        against its jitter (:func:`within_fixation_motion`, the same motion that the
        reported per-bin gaze adds), rounded with hysteresis (:func:`motion_shift`). Where
        the tracker resolves no motion (``w`` near 0, short fixations) every move rounds to
        0 and nothing changes; on long fixations with drift, a fixed gaze would blur the
        fields and put the fixation on one cell of the several the eye crossed (issue 18).
        """
        shift = None
        if FOLLOW_MOTION:
            motion, _, _ = within_fixation_motion(self.data, self.tracker)
            self._placed = motion_shift(motion, getattr(self, "_placed", None))
            shift = self._placed.shift
        self.batches.set_shift(None if shift is None else shift.to(self.data.counts.device))

    def windows(self, drawn_keys: torch.Tensor | None = None) -> Windows:
        """Each fixation's window for the current tracker (half-width from its σ)."""
        w = self.settings.window
        h = window_half_width(self.tracker.sigma, w.k, w.h_min, w.h_max, self.grid)
        return make_windows(self.data, self.tracker, self.grid, h, drawn_keys)

    def window_ll(self):
        """``(crops, counts, positions) -> (T, K)`` response log-likelihood over windows."""
        return getattr(self.response, "window_log_likelihood", None) or (
            lambda c, y, z: ResponseModel.window_log_likelihood(self.response, c, y, z)
        )

    def window_loglik(self, win: Windows) -> torch.Tensor:
        """``(F, K)`` float64 response log-likelihood summed over each fixation's bins."""
        d = self.data
        k = win.side**2
        chunk = self.batches.chunk_bins(self.batches.window_bin_bytes(win))
        acc = torch.zeros(win.cells.shape[:2], dtype=torch.float64, device=d.counts.device)
        window_ll = self.window_ll()
        bins_in, runs = self.batches.scored(self.response_weight)
        with torch.no_grad():
            if runs is not None:  # held frames: one row per run, exact (module docstring)
                for idx, f, crops in self.batches.run_window_crops(win, chunk, runs):
                    positions = win.cells[f].to(d.counts.dtype)
                    ll = window_ll(crops, runs.mean_counts[idx], positions).reshape(idx.numel(), k)
                    ll = ll.to(torch.float64) * runs.size[idx, None].to(torch.float64)
                    acc.index_add_(0, f, ll + runs.log_factorial_gap[idx, None])
                return acc
            for bins, f, crops in self.batches.window_crops(win, chunk, bins_in):
                positions = win.cells[f].to(d.counts.dtype)
                ll = window_ll(crops, d.counts[bins], positions).reshape(bins.numel(), k)
                acc.index_add_(0, f, self.weighted(ll.to(torch.float64), bins))
        return acc

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
            1024,
            self.batches.chunk_bins(item * (lags * r * r + 2 * k + lags * p * p) + frame_bytes),
        )
        approx = torch.zeros(win.cells.shape[:2], dtype=torch.float64, device=d.counts.device)
        rf = resp.rf.detach()
        with torch.no_grad():
            for bins, f, crops in self.batches.window_crops(win, chunk):
                t = bins.numel()
                # Σ_n y_tn (k_n · x) = (Σ_n y_tn k_n) · x: one kernel per bin
                kern = (d.counts[bins] @ rf.flatten(1)).reshape(t, lags, p, p)
                lin = F.conv2d(crops.reshape(1, t * lags, r, r), kern, groups=t)
                approx.index_add_(0, f, self.weighted(lin.reshape(t, k).to(torch.float64), bins))
        score = (approx + log_other).masked_fill(~win.support, -torch.inf)
        top = score.topk(min(int(self.settings.estep.fast_top_k), k), dim=1).indices
        keep = torch.zeros_like(win.support)
        keep.scatter_(1, top, True)
        keep &= win.support
        exact = torch.full(keep.shape, -torch.inf, dtype=torch.float64, device=keep.device)
        exact[keep] = 0.0
        with torch.no_grad():
            for x, b, z, pf, pk in self.batches.pair_chunks(keep, win.cells):
                ll = resp.log_likelihood(x, self.data.counts[b], z).to(torch.float64)
                exact.index_put_((pf, pk), self.weighted(ll, b), accumulate=True)
        return exact

    def weighted(self, ll: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """``ll (M, ...)`` of ``bins (M,)`` times :attr:`response_weight`."""
        if self.response_weight is None:
            return ll
        w = self.response_weight.to(ll)[bins]
        return ll * w.reshape(-1, *([1] * (ll.dim() - 1)))

    def log_other(self, win: Windows) -> torch.Tensor:
        """``(F, K)`` log p(ẑ | z) + log p(z) of the windows' cells, on the CPU."""
        pos = self.tracker_positions(win)
        prior = self.cell_prior.log_prob(win.cell_index.cpu())
        return self.tracker.log_prob(self.data.fix_reading, pos) + prior

    def tracker_positions(self, win: Windows) -> torch.Tensor:
        """``(F, K, 2)`` centred-pixel positions for the tracker term (targets at calibration)."""
        return self.data.pin_calibration(win.cells.cpu().to(torch.float64) - self.center_px)

    # M-step ------------------------------------------------------------------------------
    def m_step(self, estep: EStep) -> None:
        post: FixationPosterior = estep.posterior
        win = post.windows
        if post.draws is not None:
            weights = post.draws.to(torch.float64) / float(self.settings.estep.num_samples)
            keep = post.draws > 0
        else:
            weights = post.log_q.exp()
            keep = prune_support(post.log_q, self.settings.mstep.prune_mass)
        pairs = self.fit_response(win.cells, weights, keep)
        w_cpu = weights.cpu()
        self.tracker.m_step(
            TrackerStats.from_weighted(self.data.fix_reading, self.tracker_positions(win), w_cpu)
        )
        if self.cell_prior.learnable:
            self.cell_prior.m_step(win.cell_index.cpu(), w_cpu)
        if self.gauge_held:
            self.hold_gauge(pairs, w_cpu, win)

    @property
    def gauge_held(self) -> bool:
        """Whether each M-step ends with :meth:`hold_gauge` (``HOLD_GAUGE`` switches it off
        for the side-by-side benchmark)."""
        return self.holds_gauge and HOLD_GAUGE

    def hold_gauge(self, pairs, q: torch.Tensor, win: Windows) -> None:
        """Keep the translation gauge of ``offset: fields`` during EM (when ``holds_gauge``).

        The likelihood is nearly flat along a common shift of gaze and fields: only the
        patch's edges and the tracker's prior tilt it. Left free, EM creeps along it by
        hundredths of a pixel per iteration (a fixation task's per-bin fit: the common
        offset moved 0.4 px over 57 iterations while the gaze relative to it had settled
        by iteration 7). Moving the fields back to the patch centre (a sub-pixel Fourier
        shift) and ``b`` by ``A m`` after each M-step removes that direction; measured
        in ``docs/performance.md``, "Holding the gauge during EM".

        The step is a projection, so the objective may fall a little: ``pairs`` (the
        M-step's weighted pairs) and ``q (F, K)`` (the tracker's weights over ``win``)
        give its cost in the expected objective, ``projection_loss``, which bounds that
        fall (``run_em`` checks the bound).
        """
        if getattr(self.response, "rf", None) is None:
            return
        if self.temperature != 1.0:  # a tempered step bounds nothing (no EM check follows)
            subpixel_gauge(self.response, self.tracker)
            self.projection_loss = 0.0
            return
        pos = self.tracker_positions(win)

        def expected() -> float:
            tr = self.tracker.log_prob(self.data.fix_reading, pos)
            tr = torch.where(q > 0, q * tr, torch.zeros_like(tr))
            return self.expected_objective(pairs) + float(tr.sum())

        before = expected()
        m = subpixel_gauge(self.response, self.tracker)
        self.projection_loss = max(before - expected(), 0.0)
        log.debug("gauge held: (%.3g, %.3g) px, Q −%.3g", m[0], m[1], self.projection_loss)

    def recentre_fields(self) -> tuple[int, int]:
        """Fix the translation gauge by the receptive-field region (``offset: fields``).

        A common shift of every gaze position and every field leaves the responses'
        likelihood unchanged. Here the population's fields are centred on the declared
        region: when their energy centroid is a whole pixel or more off the patch centre,
        the fields move back by it (zero filled) and the tracker's offset ``b`` by ``A m``,
        so the gaze implied by every reading moves by ``m``. Returns ``m (x, y)``.
        ``GazeEM`` does this before EM, refitting the fields after each move; during EM
        :meth:`hold_gauge` keeps it to a fraction of a pixel.
        """
        rf = getattr(self.response, "rf", None)
        if rf is None:
            return (0, 0)
        cx, cy = energy_centroid(rf)
        mx, my = round(cx), round(cy)
        p = rf.shape[-1]
        with torch.no_grad():
            if mx == 0 and my == 0:
                return (0, 0)
            new = torch.zeros_like(rf)
            rs, rd = (
                (slice(my, p), slice(0, p - my)) if my >= 0 else (slice(0, p + my), slice(-my, p))
            )
            cs, cd = (
                (slice(mx, p), slice(0, p - mx)) if mx >= 0 else (slice(0, p + mx), slice(-mx, p))
            )
            new[..., rd, cd] = rf[..., rs, cs]
            rf.copy_(new)
            m = torch.tensor([mx, my], dtype=torch.float64)
            self.tracker.offset = self.tracker.offset - self.tracker.gain @ m
        log.debug("fields recentred by (%d, %d) px", mx, my)
        return (mx, my)

    def log_penalty(self) -> float:
        with torch.no_grad():
            return float(self.response.log_penalty()) + self.cell_prior.log_penalty()

    # SQUAREM (gazeem.em.squarem) -----------------------------------------------------------
    def parameter_vector(self) -> torch.Tensor:
        """The response's parameters, the gain, the offset and ``log σ``: float64, CPU."""
        t = self.tracker
        parts = [
            p.detach().reshape(-1).to("cpu", torch.float64) for p in self.response.parameters()
        ]
        parts += [t.gain.reshape(-1), t.offset, torch.tensor([math.log(t.sigma)])]
        return torch.cat(parts)

    def set_parameter_vector(self, v: torch.Tensor) -> int:
        """Set what :meth:`parameter_vector` returns; returns how many entries it read."""
        i = 0
        with torch.no_grad():
            for p in self.response.parameters():
                p.copy_(v[i : i + p.numel()].reshape(p.shape).to(p))
                i += p.numel()
        t = self.tracker
        t.gain, t.offset = v[i : i + 4].reshape(2, 2).clone(), v[i + 4 : i + 6].clone()
        t.sigma = max(math.exp(float(v[i + 6])), t.min_sigma)
        return i + 7

    def fit_response_on_positions(self, cells: torch.Tensor) -> None:
        """Fit the response model with q a point mass at ``cells (F, 2)`` (stimulus px)."""
        cells = cells.to(self.data.counts.device)[:, None, :]
        ones = torch.ones(cells.shape[:2], dtype=torch.float64, device=cells.device)
        self.fit_response(cells, ones, ones > 0)

    def conditional_loglik(self, cells: torch.Tensor) -> float:
        """``Σ_t log p(y_t | z = cells[f(t)])`` in nats under the current response model."""
        cells = cells.to(self.data.counts.device)[:, None, :]
        ones = torch.ones(cells.shape[:2], dtype=torch.float64, device=cells.device)
        return self.pairs_loglik(self.batches.pair_batches(cells, ones, ones > 0, cache=False))

    def fit_response(self, cells: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor):
        """Refit the response on pairs ``cells (F, K, 2)`` weighted by ``weights (F, K)``;
        returns the objective over all kept pairs (cached where it fits), for reuse."""
        cap = int(self.settings.mstep.max_cells)
        if int(keep.sum(1).max()) <= cap:
            full = self.objective(cells, weights, keep, cache=True)
            self.maximize(full)
            return full
        # broad posteriors: optimise on the most probable cells, then check exactly
        w_kept = torch.where(keep, weights, torch.zeros_like(weights))
        top = w_kept.topk(cap, dim=1)
        small = torch.zeros_like(keep).scatter_(1, top.indices, True) & keep
        w_small = torch.where(small, weights, torch.zeros_like(weights))
        w_small = w_small * (
            w_kept.sum(1, keepdim=True) / w_small.sum(1, keepdim=True).clamp_min(1e-300)
        )
        if self.temperature != 1.0:
            # A tempered step (annealing) is not an EM step, so its exact check against
            # the whole posterior (every kept pair cut again, several times) buys nothing
            capped = self.objective(cells, w_small, small, cache=True)
            self.maximize(capped)
            return capped
        full = self.objective(cells, weights, keep, cache=False)
        before = [p.detach().clone() for p in self.response.parameters()]
        q_before = self.expected_objective(full)
        self.maximize(self.objective(cells, w_small, small, cache=True))
        after = [p.detach().clone() for p in self.response.parameters()]
        step = 1.0
        while True:
            q_after = self.expected_objective(full)
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
        return full

    def objective(self, cells, weights, keep, cache: bool):
        """The M-step's objective: by windows where the response allows it, else by pairs."""
        if WINDOW_MSTEP and getattr(self.response, "window_mstep", False):
            return WindowObjective(self.batches, cells, weights, keep, pooled=True, cache=cache)
        return self.batches.pair_batches(cells, weights, keep, cache=cache, pooled=True)

    def maximize(self, batches) -> None:
        m = self.settings.mstep
        info = maximize_weighted(
            self.response,
            batches,
            method=m.method,
            max_iter=m.max_iter,
            adam_steps=m.adam_steps,
            adam_lr=m.adam_lr,
        )
        log.debug("response M-step: %s", info)

    def expected_objective(self, batches) -> float:
        """``Σ_pairs w · log p(y | x, z) + log_penalty`` at the current parameters (nats;
        a window objective leaves out ``Σ w log y!``, which the parameters do not change)."""
        return self.pairs_loglik(batches) + float(self.response.log_penalty().detach())

    def pairs_loglik(self, batches) -> float:
        """``Σ_pairs w · log p(y | x, z)`` over a pair or window objective's batches, nats."""
        with torch.no_grad():
            if isinstance(batches, WindowObjective):
                return batches.value(self.response)
            return sum(
                float((w * self.response.log_likelihood(x, y, z)).sum()) for x, y, z, w in batches()
            )
