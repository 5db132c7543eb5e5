"""Stimulus crops and (bin, cell) pair batches under a memory budget, and the patch cache.

The retinal patch of a gaze cell ``z`` is centred at ``z`` plus the session's
receptive-field offset (:attr:`gazeem.coords.StimulusGeometry.rf_offset_px`); outside
the stimulus it is the background, 0 contrast.

The E-steps score whole windows from one crop per bin (:meth:`Batches.window_crops`);
the M-steps fit the response on (bin, cell) pairs weighted by the posterior
(:meth:`Batches.pair_batches`). Both run a chunk at a time, sized from the
:class:`~gazeem.gaze.settings.MemoryBudget`, so memory does not grow with the session.

Held frames (:class:`Runs`): where consecutive bins of a fixation see the same frames
(a photograph held for seconds), every cell gives them the same patch, and a Poisson
model's likelihood depends on their counts only through the sum. Such a run is scored
once, with its mean counts and its length as weight, which is exact (the ``log y!``
terms are added back) and, for photographs, ~20x less work than a row per bin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from gazeem.gaze.data import GazeData
from gazeem.gaze.patches import gather_crops, lagged_frame_index
from gazeem.gaze.settings import MemoryBudget
from gazeem.gaze.windows import Windows

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, z, w

#: pool held frames only when it at least halves the rows (noise stimuli never pool)
POOL_BELOW = 0.5


def concat_ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``cat([arange(s, s + n) for s, n in zip(starts, lengths)])``, without a Python loop."""
    first = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(int(lengths.sum()), device=lengths.device)
    return starts.repeat_interleave(lengths) + within - first.repeat_interleave(lengths)


def run_starts(
    data: GazeData,
    bins: torch.Tensor,
    key: torch.Tensor,
    n_lags: int,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(M,)`` bool: which of ``bins`` start a run, where ``key (M,)`` (a fixation or a
    window) or the lagged frames change from the bin before, or, with ``shift (T, 2)``
    (:attr:`Batches.shift`), where the bins' patch moves."""
    frames = lagged_frame_index(data.frame, bins, n_lags)
    new = torch.ones(bins.numel(), dtype=torch.bool, device=bins.device)
    new[1:] = (key[1:] != key[:-1]) | (frames[1:] != frames[:-1]).any(1)
    if shift is not None:
        s = shift[bins]
        new[1:] |= (s[1:] != s[:-1]).any(1)
    return new


@dataclass(frozen=True)
class Runs:
    """Runs of consecutive fitted bins of one fixation that see the same lagged frames.

    Attributes
    ----------
    first
        ``(R,)`` the first bin of each run (its frames are every bin's frames).
    fixation
        ``(R,)`` fixation index, sorted as ``fit_bins``.
    size
        ``(R,)`` bins in each run (counts' dtype).
    mean_counts
        ``(R, N)`` counts averaged over the run's bins.
    log_factorial_gap
        ``(R,)`` float64 ``size · Σ_n log(ȳ_n)! − Σ_t Σ_n log(y_tn)!``: added to
        ``size · log p(ȳ | λ)``, it gives the run's exact ``Σ_t log p(y_t | λ)``.
    """

    first: torch.Tensor
    fixation: torch.Tensor
    size: torch.Tensor
    mean_counts: torch.Tensor
    log_factorial_gap: torch.Tensor

    @classmethod
    def of(
        cls,
        data: GazeData,
        n_lags: int,
        chunk: int,
        shift: torch.Tensor | None = None,
        bins: torch.Tensor | None = None,
    ) -> Runs:
        """The runs of ``data``'s fitted bins, or of the sorted subset ``bins`` of them
        (bins of a run need not be adjacent: they share a fixation and frames); with
        ``shift`` (:attr:`Batches.shift`), a run also ends where the bins' patch moves."""
        bins = data.fit_bins if bins is None else bins
        fix = data.fixation[bins]
        new = run_starts(data, bins, fix, n_lags, shift)
        run = torch.cumsum(new, 0) - 1
        n_runs = int(run[-1]) + 1
        counts = data.counts
        total = torch.zeros(n_runs, counts.shape[1], dtype=torch.float64, device=bins.device)
        lfact = torch.zeros(n_runs, dtype=torch.float64, device=bins.device)
        for s in range(0, bins.numel(), chunk):
            y = counts[bins[s : s + chunk]].to(torch.float64)
            total.index_add_(0, run[s : s + chunk], y)
            lfact.index_add_(0, run[s : s + chunk], torch.lgamma(y + 1).sum(1))
        size = torch.bincount(run, minlength=n_runs).to(torch.float64)
        mean = total / size[:, None]
        mean_c = mean.to(counts.dtype)
        gap = size * torch.lgamma(mean_c.to(torch.float64) + 1).sum(1) - lfact
        return cls(bins[new], fix[new], size.to(counts.dtype), mean_c, gap)

    @property
    def n_runs(self) -> int:
        return int(self.first.numel())


class Batches:
    """Crops and pair batches of one session for one response model."""

    def __init__(self, data: GazeData, response: torch.nn.Module, budget: MemoryBudget) -> None:
        self.data = data
        self.response = response
        self.budget = budget
        #: where the patch sits relative to the gaze cell, whole pixels (x, y down)
        self.offset = data.geometry.rf_offset_px
        #: ``(T, 2)`` int64 whole-pixel move (x, y) of each bin's gaze from its fixation's
        #: cell, or ``None``: the eye's motion within a fixation as the tracker follows it
        #: (:meth:`gazeem.gaze.fixation.FixationProblem.follow_motion`)
        self.shift: torch.Tensor | None = None
        self._runs: Runs | bool | None = False  # False: not computed yet

    def set_shift(self, shift: torch.Tensor | None) -> None:
        """Set :attr:`shift` (all zeros: ``None``); the held-frame runs follow it."""
        if shift is not None and not bool(shift.any()):
            shift = None
        if shift is None and self.shift is None:
            return
        if shift is not None and self.shift is not None and torch.equal(shift, self.shift):
            return
        self.shift = shift
        self._runs = False

    def moved(self, z: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """Cells ``z (M, 2)`` of ``bins (M,)`` moved by :attr:`shift` (unchanged without)."""
        return z if self.shift is None else z + self.shift[bins]

    @property
    def runs(self) -> Runs | None:
        """Held-frame runs, or ``None`` when the model is not Poisson in the counts or
        pooling would not halve the rows (see the module docstring)."""
        if self._runs is False:
            self._runs = None
            if getattr(self.response, "poisson_in_counts", False) and self._may_pool:
                runs = self._runs_of(None)
                if runs.n_runs <= POOL_BELOW * self.data.fit_bins.numel():
                    self._runs = runs
        return self._runs

    @functools.cached_property
    def _may_pool(self) -> bool:
        """Whether pooling can halve the rows: the runs without :attr:`shift` are a lower
        bound of the runs with it (a shift only ends more runs), so a stimulus with a
        frame per bin (noise) is ruled out once, without counting its runs' spikes."""
        d = self.data
        fix = d.fixation[d.fit_bins]
        lower = int(run_starts(d, d.fit_bins, fix, self.response.n_lags).sum())
        return lower <= POOL_BELOW * d.fit_bins.numel()

    def _runs_of(self, bins: torch.Tensor | None) -> Runs:
        chunk = self.chunk_bins(16 * self.data.n_units * self.data.counts.element_size())
        return Runs.of(self.data, self.response.n_lags, chunk, self.shift, bins)

    def shared_rows(self, bins: torch.Tensor, key: torch.Tensor):
        """``(first, row)``: which of ``bins`` (sorted as ``fit_bins``; ``key (M,)`` their
        fixation or window) start a run of the same frames at the same :attr:`shift`, and
        each bin's run, for scoring a run's bins from one crop; ``None`` where the response
        cannot share crops or sharing would not halve them."""
        if not hasattr(self.response, "shared_window_log_likelihood"):
            return None
        first = run_starts(self.data, bins, key, self.response.n_lags, self.shift)
        if int(first.sum()) > POOL_BELOW * bins.numel():
            return None
        return first, torch.cumsum(first, 0) - 1

    def runs_over(self, bins: torch.Tensor) -> Runs | None:
        """Held-frame runs of the sorted subset ``bins`` of the fitted bins (``None`` where
        the session does not pool, :attr:`runs`)."""
        return None if self.runs is None else self._runs_of(bins)

    def scored(self, weight: torch.Tensor | None) -> tuple[torch.Tensor, Runs | None]:
        """The fitted bins whose spikes an E-step lets in (``weight (T,)`` not 0, every bin
        without one) and, where frames are held and every weight is 0 or 1, their runs."""
        d = self.data
        if weight is None:
            return d.fit_bins, self.runs
        w = weight.to(d.fit_bins.device)[d.fit_bins]
        bins = d.fit_bins[w != 0]
        return bins, self.runs_over(bins) if bool(((w == 0) | (w == 1)).all()) else None

    def chunk_bins(self, bytes_per_bin: int) -> int:
        return self.budget.items_per_chunk(bytes_per_bin)

    # windows: one crop per bin covers its fixation's window plus a patch around each cell --
    def window_bin_bytes(self, win: Windows) -> int:
        """Working memory of one bin's window log-likelihood: crops, drive, output, frames."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        r = win.side - 1 + p
        k = win.side**2
        item = d.counts.element_size()
        frame_bytes = lags * d.frames.bytes_per_frame_read()  # each bin may need new frames
        return item * (3 * d.n_units * k + lags * r * r + 2 * k) + frame_bytes

    def window_crops(self, win: Windows, chunk: int, bins: torch.Tensor | None = None) -> Iterator:
        """For each chunk of the fitted bins (or of their subset ``bins``):
        ``(bins, fixation, crops (T, lags, R, R))``."""
        d = self.data
        every = d.fit_bins if bins is None else bins
        for s in range(0, every.numel(), chunk):
            bins = every[s : s + chunk]
            f = d.fixation[bins]
            yield bins, f, self.crops_of(win, bins, f)

    def run_window_crops(self, win: Windows, chunk: int, runs: Runs | None = None) -> Iterator:
        """As :meth:`window_crops` over held-frame runs (:attr:`runs` by default):
        ``(runs, fixation, crops)``."""
        runs = self.runs if runs is None else runs
        for s in range(0, runs.n_runs, chunk):
            idx = torch.arange(s, min(s + chunk, runs.n_runs), device=runs.first.device)
            f = runs.fixation[idx]
            yield idx, f, self.crops_of(win, runs.first[idx], f)

    def crops_of(self, win: Windows, bins: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """``(T, lags, R, R)`` crops of ``bins`` in fixations ``f``: each covers the
        fixation's window plus the patch around every cell."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        c = self.moved(win.centers[f], bins)
        ox, oy = self.offset
        top, left = c[:, 1] + oy - win.half - p // 2, c[:, 0] + ox - win.half - p // 2
        return gather_crops(
            d.frames, lagged_frame_index(d.frame, bins, lags), top, left, win.side - 1 + p
        )

    # pairs: one patch per (bin, cell) ----------------------------------------------------
    def pair_batch_size(self) -> int:
        """Pairs per chunk: patches, counts and, for lazily read frames, the frames they touch."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        per_pair = (
            d.counts.element_size() * (lags * p * p + d.n_units * 4)
            + lags * d.frames.bytes_per_frame_read()
        )
        return self.chunk_bins(per_pair)

    def pair_blocks(self, keep: torch.Tensor, runs: Runs | None = None) -> Iterator:
        """Every (bin, kept cell) pair, a block of whole fixations at a time.

        Yields ``(bins, fixation, cell)`` index tensors ``(M_block,)``; a block holds at
        most one batch of pairs (or one fixation), so memory does not grow with the
        session even while posteriors are broad. With ``runs``, the rows are held-frame
        runs and ``bins`` holds run indices.
        """
        d = self.data
        n_fix = keep.shape[0]
        if runs is None:
            rows, fb = d.fit_bins, d.fixation[d.fit_bins]  # sorted by fixation
        else:
            rows = torch.arange(runs.n_runs, device=runs.first.device)
            fb = runs.fixation
        n_bins = torch.bincount(fb, minlength=n_fix)
        bin_start = torch.cumsum(n_bins, 0) - n_bins
        n_sup = keep.sum(1)
        cum = torch.cumsum(n_sup * n_bins, 0).cpu()
        batch = self.pair_batch_size()
        a = 0
        while a < n_fix:
            done = int(cum[a - 1]) if a else 0
            b = int(torch.searchsorted(cum, torch.tensor(done + batch), right=True))
            b = min(max(b, a + 1), n_fix)
            lo, hi = int(bin_start[a]), int(bin_start[b - 1] + n_bins[b - 1])
            bins = rows[lo:hi]
            sup_f, sup_k = keep[a:b].nonzero(as_tuple=True)
            ns = torch.bincount(sup_f, minlength=b - a)
            start = torch.cumsum(ns, 0) - ns
            local = fb[lo:hi] - a
            reps = ns[local]
            sidx = concat_ranges(start[local], reps)
            yield bins.repeat_interleave(reps), sup_f[sidx] + a, sup_k[sidx]
            a = b

    def pair_chunks(
        self, keep: torch.Tensor, cells: torch.Tensor, runs: Runs | None = None, raw=False
    ) -> Iterator:
        """Patches, bins, positions and (fixation, cell) indices of every kept pair, by chunk.

        With ``runs``, a pair is a (held-frame run, cell) and ``bins`` holds run indices;
        with ``raw``, the patches of a coded stimulus are its codes (``gather_crops``).
        """
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        batch = self.pair_batch_size()
        for bins_all, pf_all, pk_all in self.pair_blocks(keep, runs):
            for s in range(0, bins_all.numel(), batch):
                b, pf, pk = bins_all[s : s + batch], pf_all[s : s + batch], pk_all[s : s + batch]
                first = b if runs is None else runs.first[b]
                z = self.moved(cells[pf, pk], first)
                ox, oy = self.offset
                x = gather_crops(
                    d.frames,
                    lagged_frame_index(d.frame, first, lags),
                    z[:, 1] + oy - p // 2,
                    z[:, 0] + ox - p // 2,
                    p,
                    raw,
                )
                yield x, b, z.to(d.counts.dtype), pf, pk

    def pair_batches(
        self, cells, weights, keep, cache: bool, pooled: bool = False
    ) -> Callable[[], Iterator[Batch]]:
        """A callable yielding ``(x, y, z, w)`` batches over all (bin, kept cell) pairs.

        ``cells (F, K, 2)`` stimulus px, ``weights (F, K)``, ``keep (F, K)`` bool. With
        ``pooled`` (and held frames, :attr:`runs`), a batch row is a run: its mean counts,
        weighted by its length. The weighted log-likelihood then equals the per-bin one up
        to the ``log y!`` terms, which depend on neither the parameters nor the gaze: an
        M-step's objective, not a reported likelihood.
        """
        d = self.data
        runs = self.runs if pooled else None
        rows_fix = d.fixation[d.fit_bins] if runs is None else runs.fixation
        n_pairs = int((keep.sum(1) * torch.bincount(rows_fix, minlength=keep.shape[0])).sum())
        w_all = weights.to(d.counts.dtype)

        def make(raw: bool):
            for x, b, z, pf, pk in self.pair_chunks(keep, cells, runs, raw):
                w = w_all[pf, pk]
                yield x, b, z, w if runs is None else w * runs.size[b]

        counts = None if runs is None else runs.mean_counts
        return self.cached(make, n_pairs, cache, counts)

    def sparse_pair_batches(
        self, bins, xy, w, cache: bool, counts: torch.Tensor | None = None
    ) -> Callable[[], Iterator[Batch]]:
        """A callable yielding ``(x, y, z, w)`` batches over given (bin, position) pairs;
        with ``counts (M, N)``, pair ``i``'s counts are ``counts[i]``, not its bin's (pairs
        pooled over bins that see the same frames)."""
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        dev = d.counts.device
        batch = self.pair_batch_size()
        w = w.to(device=dev, dtype=d.counts.dtype)

        def make(raw: bool):
            for s in range(0, bins.numel(), batch):
                b = bins[s : s + batch].to(dev)
                z = xy[s : s + batch].to(dev)
                ox, oy = self.offset
                top, left = z[:, 1] + oy - p // 2, z[:, 0] + ox - p // 2
                idx = lagged_frame_index(d.frame, b, lags)
                x = gather_crops(d.frames, idx, top, left, p, raw)
                if counts is not None:
                    b = torch.arange(s, s + b.numel(), device=dev)
                yield x, b, z.to(d.counts.dtype), w[s : s + batch]

        return self.cached(make, bins.numel(), cache, counts)

    def cached(
        self, make, n_pairs: int, cache: bool, counts: torch.Tensor | None = None
    ) -> Callable[[], Iterator[Batch]]:
        """A callable over ``make(raw)``'s ``(x, bins, z, w)``, yielding ``(x, counts, z, w)``.

        ``counts`` is the table ``bins`` index (the session's counts by default).

        With ``cache``, and when ``n_pairs`` fit in ``cache_mb``, the batches are made once
        and kept. A kept pair holds its patch, its bin (counts are looked up, not copied:
        they would take more room than the patch), its position and its weight. Where
        the patches' values do not fit but a coded stimulus's one-byte codes do, the codes
        are kept and decoded at each use: the table lookup costs about twice the M-step's
        matrix product, far less than cutting the patches again.
        """
        d = self.data
        p, lags = self.response.patch_size, self.response.n_lags
        item = d.counts.element_size()
        per_pair = item * (lags * p * p + 3) + 8
        per_coded = lags * p * p + 3 * item + 8
        counts = d.counts if counts is None else counts
        if cache and self.budget.fits_cache(n_pairs * per_pair):
            kept = list(make(False))
            return lambda: ((x, counts[b], z, w) for x, b, z, w in kept)
        if cache and d.frames.coded and self.budget.fits_cache(n_pairs * per_coded):
            kept = list(make(True))
            dec = d.frames.decode
            return lambda: ((dec(x), counts[b], z, w) for x, b, z, w in kept)
        return lambda: ((x, counts[b], z, w) for x, b, z, w in make(False))
