"""Forward–backward and Viterbi for a per-bin gaze chain on square windows of grid cells.

The latent ``z_n`` at chain position ``n`` is one cell of an ``S × S`` window (``K = S²``).
Position ``n`` enters by one of three transitions from ``n - 1``:

* ``DRIFT`` (same window): a Gaussian random walk, step SD ``σ_drift`` cells per axis;
* ``SACCADE`` (next fixation's window): a Gaussian with SD ``σ_sacc`` about where the
  tracker's measured displacement puts the eye; the window centres differ from that
  displacement by a fractional ``shift`` (rows, cols), which the kernel absorbs;
* ``RESET`` (after a blink, and at ``n = 0``): independent of the past, drawn from
  ``exp(log_init)`` of the new window.

A transition is separable, ``T((r, c) → (r', c')) = M_r[r, r'] · M_c[c, c']``, each
factor normalised over ``j`` (mass stays in the window): for a saccade
``M[i, j] ∝ exp(-(j - i + e)² / 2σ²)``; for drift, the chance that a continuous
Gaussian step from a point in cell ``i`` lands in cell ``j`` (:func:`drift_kernel`).
It is applied as two ``S × S`` matrix products (a 1-D convolution along each axis);
no ``K × K`` matrix is ever built.

Messages are float64 probabilities rescaled to sum to one at every step, the scale
factors kept as logs, with emissions shifted by their per-step maximum before
exponentiation: the scaled forward–backward, as stable as the log-space recursions
(every factor is at most 1 relative to its step's maximum; float64 spans 708 nats).
Time runs in chunks; forward messages are checkpointed at chunk boundaries and
recomputed during the backward pass, so memory is ``O(chunk · K)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from scipy.optimize import minimize_scalar

DRIFT, SACCADE, RESET = 0, 1, 2

#: ``emission(lo, hi) -> (hi - lo, K)`` float64 log emission of chain positions lo..hi-1
Emission = Callable[[int, int], torch.Tensor]


@dataclass(frozen=True)
class Chain:
    """The structure of a chain of ``N`` positions on windows of side ``S``.

    Attributes
    ----------
    side
        Window side ``S`` (cells).
    kind
        ``(N,)`` int64 transition into each position (``kind[0]`` must be ``RESET``).
    shift
        ``(N, 2)`` float64 (row, col) offset ``e`` of a saccade's kernel, cells.
    group
        ``(N,)`` int64 window (fixation) of each position; indexes ``log_init``.
    log_init
        ``(G, K)`` float64 unnormalised log initial weights used at a reset.
    """

    side: int
    kind: torch.Tensor
    shift: torch.Tensor
    group: torch.Tensor
    log_init: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.kind.numel())


def axis_kernel(side: int, sigma: float, shift: torch.Tensor) -> torch.Tensor:
    """``(B, S, S)`` row-stochastic ``M[i, j] ∝ exp(-(j - i + e)² / 2σ²)`` for shifts ``e (B,)``.

    ``σ = inf`` gives the uniform matrix (an independent draw); ``σ → 0`` the identity.
    """
    ar = torch.arange(side, dtype=torch.float64, device=shift.device)
    d = ar[None, None, :] - ar[None, :, None] + shift[:, None, None]
    if math.isinf(sigma):
        logits = torch.zeros_like(d)
    else:
        logits = -0.5 * (d / sigma) ** 2
    return torch.softmax(logits, dim=2)


def _g_neg(x: torch.Tensor) -> torch.Tensor:
    """``G(-x)`` for ``x >= 0``, where ``G(x) = ∫Φ = xΦ(x) + φ(x)``, without cancellation."""
    return torch.exp(-0.5 * x**2) * (
        1 / math.sqrt(2 * math.pi) - 0.5 * x * torch.special.erfcx(x / math.sqrt(2))
    )


def drift_kernel(side: int, sigma: float, device=None) -> torch.Tensor:
    """``(S, S)`` drift transition between 1-px cells for a continuous random walk.

    ``M[i, j]`` is the chance that a point uniform in cell ``i`` lands in cell ``j`` after
    a Gaussian step of SD ``σ``: ``σ Δ²G(d/σ)``, the second difference of ``G = ∫Φ``
    at ``d = j - i``. Unlike the Gaussian sampled at the cell centres it does not
    mistake the rounding of a sub-pixel drift for extra spread, so a fitted σ is the
    walk's own (normalised over the window, so mass stays inside it).
    """
    ar = torch.arange(side, dtype=torch.float64, device=device)
    d = (ar[None, :] - ar[:, None]).abs()
    s = max(float(sigma), 1e-12)
    # for d >= 1 the arguments are all >= 0 and G(x) = x + G(-x): the linear parts cancel
    far = s * (_g_neg((d + 1) / s) - 2 * _g_neg(d / s) + _g_neg((d - 1).abs() / s))
    near = 1 + 2 * s * (_g_neg(torch.tensor(1 / s, dtype=torch.float64)) - _g_neg(d * 0))
    k = torch.where(d == 0, near, far).clamp_min(0)
    return k / k.sum(1, keepdim=True)


@dataclass
class PairStats:
    """Expected transition statistics of a group of steps, per axis (rows, cols).

    Saccades (Gaussian kernels, one shift each): ``sq[g, a] = Σ ξ(i, j) (j - i + e)²``
    and ``src[g, a, i] = Σ_j ξ(i, j)``, ``shift[g]`` the step's ``e``. Drift (one
    kernel for all steps): ``pairs[a]`` the summed ``(S, S)`` expected counts.
    """

    sq: torch.Tensor | None = None  # (G, 2)
    src: torch.Tensor | None = None  # (G, 2, S)
    shift: torch.Tensor | None = None  # (G, 2)
    pairs: torch.Tensor | None = None  # (2, S, S), drift

    @classmethod
    def no_saccades(cls, side: int) -> PairStats:
        """Saccade statistics of a chain without saccade steps."""
        empty = torch.zeros(0, 2, dtype=torch.float64)
        return cls(sq=empty, src=torch.zeros(0, 2, side, dtype=torch.float64), shift=empty)

    def expected_log_transition(self, sigma: float) -> float:
        """``Σ ξ log M_σ`` (nats) at step SD ``sigma``."""
        if self.pairs is not None:
            m = drift_kernel(self.pairs.shape[-1], sigma)
            return float((self.pairs * m.clamp_min(1e-300).log()).sum())
        if self.sq.numel() == 0:
            return 0.0
        side = self.src.shape[-1]
        ar = torch.arange(side, dtype=torch.float64)
        d = ar[None, None, None, :] - ar[None, None, :, None] + self.shift[:, :, None, None]
        log_z = torch.logsumexp(-0.5 * (d / sigma) ** 2, dim=3)  # (G, 2, S)
        return float(-0.5 * self.sq.sum() / sigma**2 - (self.src * log_z).sum())

    def fit_sigma(self, lo: float, hi: float) -> float:
        """The σ in ``[lo, hi]`` maximising :meth:`expected_log_transition` (1-D search)."""
        res = minimize_scalar(
            lambda s: -self.expected_log_transition(math.exp(s)),
            bounds=(math.log(lo), math.log(hi)),
            method="bounded",
            options={"xatol": 1e-6},
        )
        return math.exp(float(res.x))


@dataclass
class FBResult:
    """What one forward–backward pass returns (marginals go to the ``on_marginals`` callback)."""

    log_marginal: float
    drift: PairStats
    saccade: PairStats


class GridHMM:
    """Forward–backward and Viterbi over a :class:`Chain` with given step SDs (cells)."""

    def __init__(self, chain: Chain, sigma_drift: float, sigma_sacc: float) -> None:
        self.chain = chain
        s = chain.side
        dev = chain.log_init.device
        self.m_drift = drift_kernel(s, sigma_drift, dev)
        self._sigma_sacc = sigma_sacc
        self._init_max = chain.log_init.max(dim=1).values
        self._init = (chain.log_init - self._init_max[:, None]).exp().reshape(-1, s, s)

    def _step_kernels(self, lo: int, hi: int) -> list:
        """``(M_r, M_c)`` of the transition into each position in ``[lo, hi)`` (None at a reset)."""
        ch = self.chain
        kinds = ch.kind[lo:hi].tolist()
        idx = [i for i, k in enumerate(kinds) if k == SACCADE]
        mats = axis_kernel(ch.side, self._sigma_sacc, ch.shift[lo:hi][idx].reshape(-1)).reshape(
            -1, 2, ch.side, ch.side
        )
        out: list = [None] * len(kinds)
        for i, k in enumerate(kinds):
            if k == DRIFT:
                out[i] = (self.m_drift, self.m_drift)
        for slot, i in enumerate(idx):
            out[i] = (mats[slot, 0], mats[slot, 1])
        return out

    def _forward(self, lo, hi, emis, a_prev, kernels):
        """Scaled messages ``α̂ (n, S, S)``, ``ê / c`` and the summed log scale factors."""
        s = self.chain.side
        groups = self.chain.group[lo:hi].tolist()
        e_max = emis.max(dim=1).values
        e_hat = (emis - e_max[:, None]).exp().reshape(-1, s, s)
        alpha = torch.empty_like(e_hat)
        cs = []
        a = a_prev
        for i, (g, m) in enumerate(zip(groups, kernels, strict=True)):
            pred = self._init[g] if m is None else m[0].T @ a @ m[1]
            a = pred * e_hat[i]
            c = a.sum()
            a = a / c
            alpha[i] = a
            cs.append(c)
        c_raw = torch.stack(cs)
        resets = torch.as_tensor([m is None for m in kernels], device=emis.device)
        init_part = torch.where(resets, self._init_max[self.chain.group[lo:hi]], 0.0)
        log_scale = float((e_max + c_raw.log() + init_part).sum())
        return alpha, e_hat / c_raw[:, None, None], log_scale

    def forward_backward(
        self,
        emission: Emission,
        chunk: int,
        on_marginals: Callable[[int, int, torch.Tensor, torch.Tensor], None],
        pair_stats: bool = True,
        keep_forward: bool = False,
    ) -> FBResult:
        """Run the pass; ``on_marginals(lo, hi, gamma (n, K), log_emission (n, K))`` per chunk.

        Chunks are visited last to first. ``keep_forward`` keeps every chunk's forward
        messages (``2 N K`` float64) instead of recomputing them from the checkpoints.
        Returns ``log p`` of all emissions and the expected transition statistics.
        """
        ch, s = self.chain, self.chain.side
        dev = ch.log_init.device
        bounds = [(lo, min(lo + chunk, ch.length)) for lo in range(0, ch.length, chunk)]
        checkpoints, kept, a, log_marginal = [], [], None, 0.0
        for lo, hi in bounds:
            checkpoints.append(a)
            alpha, phi, ls = self._forward(lo, hi, emission(lo, hi), a, self._step_kernels(lo, hi))
            a, log_marginal = alpha[-1], log_marginal + ls
            kept.append((alpha, phi) if keep_forward else None)
        stats = _PairAccumulator(self.m_drift, ch.shift) if pair_stats else None
        ones = torch.ones((s, s), dtype=torch.float64, device=dev)
        nxt = None  # (kernels, group, ψ = ê β̂ / c) of the position just after the current one
        for k, (lo, hi) in reversed(list(enumerate(bounds))):
            emis = emission(lo, hi)
            kernels = self._step_kernels(lo, hi)
            if kept[k] is not None:
                alpha, phi = kept[k]
                kept[k] = None
            else:
                alpha, phi, _ = self._forward(lo, hi, emis, checkpoints[k], kernels)
            groups = ch.group[lo:hi].tolist()
            beta = torch.empty_like(alpha)
            psi = torch.empty_like(alpha)
            after = nxt  # the position hi, for the step across the chunk boundary
            for i in range(hi - lo - 1, -1, -1):
                if nxt is None:
                    b = ones
                elif nxt[0] is None:  # the next position is a reset: β̂ is flat
                    b = (self._init[nxt[1]] * nxt[2]).sum().expand(s, s)
                else:
                    b = nxt[0][0] @ nxt[2] @ nxt[0][1].T
                beta[i] = b
                psi[i] = phi[i] * b
                nxt = (kernels[i], groups[i], psi[i])
            if stats is not None:
                stats.add(lo, alpha, psi, kernels, after)
            on_marginals(lo, hi, (alpha * beta).reshape(hi - lo, -1), emis)
        if stats is None:
            drift = PairStats(pairs=torch.zeros(2, s, s, dtype=torch.float64))
            return FBResult(log_marginal, drift, PairStats.no_saccades(s))
        return FBResult(log_marginal, *stats.result())

    def viterbi(self, emission: Emission, chunk: int) -> torch.Tensor:
        """``(N,)`` int64 most probable cell per position (flat window index)."""
        ch = self.chain
        bounds = [(lo, min(lo + chunk, ch.length)) for lo in range(0, ch.length, chunk)]
        checkpoints, d = [], None
        for lo, hi in bounds:
            checkpoints.append(d)
            d, _, _ = self._max_forward(lo, hi, emission(lo, hi), d, keep=False)
        path = torch.empty(ch.length, dtype=torch.int64)
        state = None  # the state at position hi, given by the chunk after (None: free)
        for (lo, hi), d_prev in zip(reversed(bounds), reversed(checkpoints), strict=True):
            _, back, best = self._max_forward(lo, hi, emission(lo, hi), d_prev, keep=True)
            s = ch.side
            for i in range(hi - lo - 1, -1, -1):
                if state is None:  # the chain was reset after i (or i is the last position)
                    state = best[i]
                path[lo + i] = state
                if back[i] is None:
                    state = None
                else:
                    r, c = divmod(state, s)
                    ir = int(back[i][0][r, c])
                    state = ir * s + int(back[i][1][ir, c])
        return path

    def _max_forward(self, lo, hi, emis, d_prev, keep: bool):
        """Max-product log messages; with ``keep``, backpointers and best cell per position."""
        s = self.chain.side
        groups = self.chain.group[lo:hi].tolist()
        log_init = self.chain.log_init
        e = emis.reshape(-1, s, s)
        d = d_prev
        back, best = [], []
        log_drift = self.m_drift.log()
        for i, (g, m) in enumerate(zip(groups, self._step_kernels(lo, hi), strict=True)):
            if m is None:
                pred, bp = log_init[g].reshape(s, s), None
            else:
                lr, lc = (
                    (log_drift, log_drift) if m[0] is self.m_drift else (m[0].log(), m[1].log())
                )
                # source cols first: t1[ir, jc] = max_ic d[ir, ic] + lc[ic, jc]
                t1, ic = (d[:, :, None] + lc[None, :, :]).max(dim=1)
                # then source rows: pred[jr, jc] = max_ir lr[ir, jr] + t1[ir, jc]
                pred, ir = (lr[:, :, None] + t1[:, None, :]).max(dim=0)
                bp = (ir, ic)
            d = pred + e[i]
            d = d - d.max()
            if keep:
                back.append(bp)
                best.append(int(d.argmax()))
        return d, back, best


class _PairAccumulator:
    """Expected transition counts, batched over the steps of a chunk.

    For a step ``i → i+1`` with kernels ``(M_r, M_c)``: ``ξ_r = M_r ⊙ (α̂_i M_c ψ_{i+1}ᵀ)``
    and ``ξ_c = M_c ⊙ (α̂_iᵀ M_r ψ_{i+1})``, with ``ψ = ê β̂ / c``.
    """

    def __init__(self, m_drift: torch.Tensor, shift: torch.Tensor) -> None:
        self.m = m_drift
        self.shift = shift
        self.drift = torch.zeros(2, *m_drift.shape, dtype=torch.float64, device=m_drift.device)
        self.sacc: list[PairStats] = []

    def add(self, lo: int, alpha, psi, kernels, after) -> None:
        n = alpha.shape[0]
        src = list(range(n - 1))
        tgt_psi = psi[1:]
        tgt_k = kernels[1:]
        if after is not None and after[0] is not None:  # the step into the next chunk
            src.append(n - 1)
            tgt_psi = torch.cat([tgt_psi, after[2][None]])
            tgt_k = [*tgt_k, after[0]]
        drift = [j for j, m in enumerate(tgt_k) if m is not None and m[0] is self.m]
        sacc = [j for j, m in enumerate(tgt_k) if m is not None and m[0] is not self.m]
        if drift:
            a, p = alpha[[src[j] for j in drift]], tgt_psi[drift]
            self.drift[0] += self.m * torch.bmm(a @ self.m, p.transpose(1, 2)).sum(0)
            self.drift[1] += self.m * torch.bmm(a.transpose(1, 2) @ self.m, p).sum(0)
        if sacc:
            a, p = alpha[[src[j] for j in sacc]], tgt_psi[sacc]
            mr = torch.stack([tgt_k[j][0] for j in sacc])
            mc = torch.stack([tgt_k[j][1] for j in sacc])
            pair = torch.stack(
                [
                    mr * torch.bmm(torch.bmm(a, mc), p.transpose(1, 2)),
                    mc * torch.bmm(torch.bmm(a.transpose(1, 2), mr), p),
                ],
                dim=1,
            )
            self.sacc.append(_pair_stats(pair, self.shift[[lo + src[j] + 1 for j in sacc]]))

    def result(self) -> tuple[PairStats, PairStats]:
        if not self.sacc:
            return PairStats(pairs=self.drift.cpu()), PairStats.no_saccades(self.m.shape[0])
        sacc = PairStats(
            sq=torch.cat([p.sq for p in self.sacc]),
            src=torch.cat([p.src for p in self.sacc]),
            shift=torch.cat([p.shift for p in self.sacc]),
        )
        return PairStats(pairs=self.drift.cpu()), sacc


def _pair_stats(pairs: torch.Tensor, shift: torch.Tensor) -> PairStats:
    """``pairs (G, 2, S, S)`` expected (source, target) counts per axis → :class:`PairStats`."""
    side = pairs.shape[-1]
    ar = torch.arange(side, dtype=torch.float64, device=pairs.device)
    d = ar[None, None, None, :] - ar[None, None, :, None] + shift[:, :, None, None]
    return PairStats(
        sq=(pairs * d**2).sum((2, 3)).cpu(),
        src=pairs.sum(3).cpu(),
        shift=shift.cpu(),
    )
