"""Fixations that the spikes say were two: a saccade that the tracker reading did not show.

Ingest cuts fixations where the reading moves (``gazeem.saccades``). A saccade whose
reading moved less than the detector sees (the tracker's error changed with the eye's
position and cancelled the step) leaves one "fixation" in which the eye sat at two
places. The per-fixation latent gives it one position, so every bin of one of the two
parts is off by the whole step: on the whole-fit benchmark's 10-minute noise session,
7 such fixations (2% of the bins) held half of the per-fixation latent's squared error
(RMS 0.643 px, 0.443 px without the fixations that held a true saccade), while the
per-bin chain, which can move within a fixation, reached 0.434 px.

:func:`split_evidence` asks the spikes, after EM, whether each fixation is better
explained by two positions, one before and one after some bin, than by one. Under the
model the answer is a Bayes factor: the evidence of one position,
``Σ_z p(z) p(ẑ | z) Π_t p(y_t | z)``, against that of two independent positions (each
part with its own mean reading, as the tracker's error is drawn afresh per fixation),
averaged over where the split falls (a uniform prior over the bins at which it may fall,
at least :data:`MIN_BINS` on each side). One pass of the E-step's per-bin window
log-likelihood, kept as running sums per fixation, gives every split point at once.
Fixations whose posterior probability of a hidden saccade, at a prior of
:data:`PRIOR` per fixation, exceeds one half are split (:func:`split_data`), and EM
goes on from the fitted parameters (``GazeEM(split_fixations=True)``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import torch

from gazeem.em.engine import EMState, run_em
from gazeem.gaze.data import GazeData, fixation_means
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.posterior import GazeMoves

log = logging.getLogger("gazeem.fit")

#: prior probability that a fixation hides a saccade
PRIOR = 0.01
#: bins on each side of a split, at least
MIN_BINS = 3
#: the two parts' most probable cells at least this far apart (px). Measured (not derived;
#: ``docs/architecture.md``, "Hidden saccades"): the decisive splits of fixations without
#: a hidden saccade put their parts 1 or 1.41 px apart on noise (drift, the whole-pixel
#: grid) and 2.0 and 2.83 px apart on photographs (broad posteriors); the hidden saccades
#: measured were 4.1-7.1 px
MIN_JUMP_PX = 3.0


def split_evidence(problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_bf (F,), at (F,), jump (F,))`` for a :class:`~gazeem.gaze.fixation.FixationProblem`
    after its last E-step: the log Bayes factor of two positions against one (nats;
    ``-inf`` where a fixation is too short or on a calibration target), and the first
    bin of the second part at the most probable split (-1: none), and how far apart
    (px) the two parts' most probable cells are there (NaN: none)."""
    d = problem.data
    win = problem.windows()
    n_fix = d.n_fixations
    log_bf = torch.full((n_fix,), -math.inf, dtype=torch.float64)
    at = torch.full((n_fix,), -1, dtype=torch.int64)
    jump = torch.full((n_fix,), math.nan, dtype=torch.float64)
    pos = problem.tracker_positions(win)  # (F, K, 2) centred px
    prior = problem.cell_prior.log_prob(win.cell_index.cpu()).to(torch.float64)
    prior = prior.masked_fill(~win.support.cpu(), -math.inf)
    reading = torch.as_tensor(d.geometry.px_to_centered(np.asarray(d.eye_px)))
    skip = d.is_calibration
    k = win.side**2
    chunk = problem.batches.chunk_bins(problem.batches.window_bin_bytes(win))

    def score(bins: torch.Tensor, f: torch.Tensor, ll: torch.Tensor) -> None:
        """Every split of the whole fixations ``f`` (contiguous runs of ``bins``)."""
        n = bins.numel()
        new = torch.ones(n, dtype=torch.bool)
        new[1:] = f[1:] != f[:-1]
        seg = torch.cumsum(new, 0) - 1
        starts = torch.nonzero(new)[:, 0]
        ends = torch.cat([starts[1:], torch.tensor([n])])
        fix = f[starts]

        def prefix(x: torch.Tensor):
            c = torch.cat([torch.zeros_like(x[:1]), x.cumsum(0)])
            return c[1:] - c[starts][seg], c[ends][seg] - c[1:]  # up to and after each row

        left, right = prefix(ll)
        rl, rr = prefix(reading[bins])
        row = torch.arange(n)
        n_left = (row - starts[seg] + 1).to(torch.float64)
        n_right = (ends[seg] - 1 - row).to(torch.float64)
        p, pr = pos[f], prior[f]
        whole = torch.logsumexp(
            (left + right)[starts]
            + other(
                problem, (rl + rr)[starts] / (n_left + n_right)[starts, None], pos[fix], prior[fix]
            ),
            dim=1,
        )
        valid = (n_left >= MIN_BINS) & (n_right >= MIN_BINS) & ~skip[f]
        both = torch.full((n,), -math.inf, dtype=torch.float64)
        if valid.any():
            v = valid
            lo_l = other(problem, rl[v] / n_left[v, None], p[v], pr[v])
            lo_r = other(problem, rr[v] / n_right[v, None].clamp_min(1), p[v], pr[v])
            both[v] = torch.logsumexp(left[v] + lo_l, 1) + torch.logsumexp(right[v] + lo_r, 1)
        g = seg.numel() and int(seg[-1]) + 1
        best = torch.full((g,), -math.inf, dtype=torch.float64).scatter_reduce(0, seg, both, "amax")
        finite = torch.isfinite(best)
        shifted = torch.where(valid, (both - best[seg]).exp(), 0.0)
        total = torch.zeros(g, dtype=torch.float64).index_add_(0, seg, shifted)
        count = torch.bincount(seg, weights=valid.to(torch.float64), minlength=g)
        mean = best + total.log() - count.clamp_min(1).log()
        log_bf[fix[finite]] = (mean - whole)[finite]
        is_best = valid & (both == best[seg])
        first = torch.full((g,), n, dtype=torch.int64).scatter_reduce(
            0, seg[is_best], row[is_best], "amin"
        )
        r = first[finite]
        at[fix[finite]] = bins[r + 1]
        cell_l = (left[r] + other(problem, rl[r] / n_left[r, None], p[r], pr[r])).argmax(1)
        cell_r = (right[r] + other(problem, rr[r] / n_right[r, None], p[r], pr[r])).argmax(1)
        cells = win.cells.cpu()[f[r]].to(torch.float64)  # (G', K, 2)
        g_ = torch.arange(r.numel())
        jump[fix[finite]] = (cells[g_, cell_l] - cells[g_, cell_r]).norm(dim=1)

    pending = None
    bins_all = d.fit_bins
    with torch.no_grad():
        for lo in range(0, bins_all.numel(), chunk):
            bins = bins_all[lo : lo + chunk]
            f = d.fixation[bins]
            ll = bin_loglik(problem, win, bins, f).reshape(bins.numel(), k)
            part = (bins.cpu(), f.cpu(), ll.to(torch.float64).cpu())
            if pending is not None:
                part = tuple(torch.cat([a, b]) for a, b in zip(pending, part, strict=True))
            done = part[1] != part[1][-1]  # the last fixation may go on in the next chunk
            pending = tuple(x[~done] for x in part)
            if done.any():
                score(*(x[done] for x in part))
        if pending is not None and pending[0].numel():
            score(*pending)
    return log_bf, at, jump


def bin_loglik(problem, win, bins: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``(M, W, W)`` response log-likelihood of each of ``bins (M,)`` at every cell of its
    fixation's window (``f (M,)``), as the E-step scores it. Where frames are held, the
    bins of a run (one fixation, the same lagged frames and the same motion shift) share
    one crop (:meth:`~gazeem.models.response.PoissonLN.shared_window_log_likelihood`)."""
    d, batches = problem.data, problem.batches
    shared = batches.shared_rows(bins, f)
    if shared is not None:
        first, row = shared
        crops = batches.crops_of(win, bins[first], f[first])
        return problem.response.shared_window_log_likelihood(crops, d.counts[bins], row)
    crops = batches.crops_of(win, bins, f)
    return problem.window_ll()(crops, d.counts[bins], win.cells[f].to(d.counts.dtype))


def other(problem, reading: torch.Tensor, pos: torch.Tensor, prior: torch.Tensor):
    """``(M, K)`` log p(ẑ | z) + log p(z) for mean readings ``(M, 2)`` at ``pos (M, K, 2)``."""
    return problem.tracker.log_prob(reading, pos) + prior


def to_split(log_bf: torch.Tensor, prior: float = PRIOR) -> torch.Tensor:
    """``(F,)`` bool: the posterior probability of a hidden saccade exceeds one half."""
    return log_bf + math.log(prior / (1 - prior)) > 0


def split_data(data: GazeData, at: torch.Tensor) -> GazeData:
    """``data`` with each fixation that has a bin in ``at (S,)`` cut in two before that bin.

    The parts keep the session's fixation id (``fix_ids`` repeats it); readings are the
    parts' own means. Calibration fixations are never cut.
    """
    fix = data.fixation.cpu().numpy()
    cut = np.zeros(fix.size, dtype=np.int64)
    cut[at.cpu().numpy()] = 1
    # a bin's new index: its old one, plus the cuts at or before it in earlier fixations
    # and in its own
    inside = fix >= 0
    order = data.fit_bins.cpu().numpy()
    before = np.cumsum(cut[order])
    new = np.full(fix.size, -1, dtype=np.int64)
    new[order] = fix[order] + before
    n_new = data.n_fixations + int(cut.sum())
    parent = np.zeros(n_new, dtype=np.int64)
    parent[new[inside]] = fix[inside]
    eye_c = data.geometry.px_to_centered(np.asarray(data.eye_px)[inside])
    reading = fixation_means(new[inside], eye_c, n_new)
    device = data.fixation.device
    return replace(
        data,
        fixation=torch.as_tensor(new, device=device),
        fit_bins=data.fit_bins,  # sorted by fixation then time: a cut keeps the order
        fix_reading=torch.as_tensor(reading, dtype=torch.float64),
        fix_calib=data.fix_calib[torch.as_tensor(parent)],
        fix_ids=data.fix_ids[parent],
    )


def split_hidden_saccades(problem, state: EMState, em: dict, moves: GazeMoves):
    """After EM (``problem``, ``state``): cut the fixations that hid a saccade and run EM
    on from the fitted parameters (:func:`~gazeem.em.engine.run_em` with ``em``, whose
    callback is ``moves``). Returns ``(problem, estep, state, n_cut)``: the new problem,
    its last E-step and the joined trace, or ``estep`` ``None`` where nothing was cut."""
    log_bf, at, jump = split_evidence(problem)
    cut = to_split(log_bf) & (jump >= MIN_JUMP_PX)
    n_cut = int(cut.sum())
    if not n_cut:
        return problem, None, state, 0
    data = split_data(problem.data, at[cut])
    log.info("%d fixations hid a saccade (log Bayes factor %s): cut", n_cut, log_bf[cut])
    new = FixationProblem(
        data,
        problem.grid,
        problem.tracker,
        problem.cell_prior,
        problem.response,
        problem.gen,
        problem.settings,
    )
    new.holds_gauge = problem.holds_gauge
    moves.data, moves.last = data, None
    estep, more = run_em(new, **em)
    return new, estep, state.then(more), n_cut
