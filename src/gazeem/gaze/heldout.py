"""Does the correction beat the raw trace? Held-out spike likelihood.

A fit can converge to a correction that the data do not support (EM stuck at the raw
trace's fixed point with a false certainty, or a wrong optimum). The spikes that chose
the corrected gaze, or fitted the fields that chose it, cannot judge it. So the
fixations are split into two folds (odd and even), and for each fold in turn:

1. fields are fitted anew (the same penalties) on the *other* fold, once at the fit's
   corrected gaze and once at the raw reading;
2. the gaze of each bin of this fold is inferred again with the first of those fields,
   from the spikes of every other bin of its fixation only (alternate bins, both ways
   round; the per-bin chain carries the gaze across the bins left out), with the fit's
   tracker, drift and window;
3. each bin's spikes are scored under the corrected fields at that gaze, and under the
   raw fields at the raw reading.

No bin's spikes placed its gaze or fitted the fields that score it. Two leakier
designs were tried first and failed on counts shuffled in time (no gaze information):
gaze inferred from half the units and scored on the other half "supported" a correction
at z = 5.1 (units share noise within a bin), and alternate bins with the fit's own
fields (which had seen the scored spikes) at z = 2.8.

The sums are the held-out log-likelihoods under the corrected gaze and under the raw
trace, nats; ``z`` is the mean per-fixation difference over its standard error
(fixations are the independent pieces: each has its own tracker error). Positions are
rounded to the grid, one point per bin, so both are scored alike.

A better likelihood is not enough on a static stimulus. When a photograph is held
through a fixation, every bin of the fixation sees the same patch, so the latent cell
can act as a per-fixation *rate state*: EM picks, near each reading, whichever cell's
predicted rates best match the fixation's counts, and held-out bins of the same
fixation confirm the match whether or not the cell is the gaze. On 1 to 4 minutes of
free viewing of photographs EM converged to such a state (corrected error 7.2 to 9.9 px
against 7.3 to 7.8 px raw) and the likelihood check "supported" it at z = 4.6 to 6.0.

So the check also asks whether the latent is the gaze: whether the spikes, *alone*,
put each held-out fixation where the tracker does (:func:`tracker_agreement`). With the
fields fitted on the other fold at the corrected gaze, each fixation's gaze is inferred
from its spikes under a flat prior over a wide window (the tracker term left out), and
its best cell is compared with the tracker's expected gaze. On the 1-minute noise
session, 96% of fixations land within 2.5σ of it (median 3.3 px, the tracker's own
error); on the photograph session 16% (chance 6%, median 31 px).

The correction is *supported* when ``z > 2`` and at least half of the held-out fixations
agree (the spikes alone then locate the gaze to within the tracker's error more often
than not; a 2-D Gaussian puts 96% within 2.5σ).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch

from gazeem.em.mstep import maximize_weighted
from gazeem.gaze.batches import Batches
from gazeem.gaze.data import GazeData
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.predictive import PredictiveCheck
from gazeem.gaze.windows import expected_positions, make_windows
from gazeem.models.response import PoissonLN, poisson_log_prob


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out log-likelihoods (nats) of the responses and the spikes they scored."""

    loglik_raw: float
    loglik_corrected: float
    n_spikes: int
    #: mean per-fixation gain (corrected − raw) over its standard error
    z: float
    #: fraction of held-out fixations whose spikes alone put the gaze within 2.5σ of the
    #: tracker's expected gaze (:func:`tracker_agreement`), and that fraction by chance
    agreement: float = float("nan")
    agreement_chance: float = float("nan")
    #: the posterior-predictive check of the held-out spikes under the raw trace and under
    #: the correction (:mod:`gazeem.gaze.predictive`)
    predictive_raw: PredictiveCheck | None = None
    predictive_corrected: PredictiveCheck | None = None

    @property
    def bits_per_spike(self) -> float:
        """``(corrected − raw) / (spikes · ln 2)``: > 0 when the correction is supported."""
        return (self.loglik_corrected - self.loglik_raw) / max(self.n_spikes, 1) / math.log(2)

    @property
    def supported(self) -> bool:
        agree = self.agreement >= MIN_AGREEMENT if math.isfinite(self.agreement) else True
        return self.z > 2.0 and agree

    @property
    def reason(self) -> str:
        """Why the correction is not supported ("" when it is)."""
        why = []
        if self.z <= 2.0:
            why.append(
                f"the corrected gaze does not predict held-out spikes better than the raw "
                f"trace (held-out gain {self.bits_per_spike:+.4f} bits/spike, z = "
                f"{self.z:.1f}, needs > 2)"
            )
        if math.isfinite(self.agreement) and self.agreement < MIN_AGREEMENT:
            why.append(
                f"the spikes alone put only {100 * self.agreement:.0f}% of held-out "
                f"fixations within {AGREEMENT_RADIUS}σ of the tracker's gaze (chance "
                f"{100 * self.agreement_chance:.0f}%, needs {100 * MIN_AGREEMENT:.0f}%): "
                "the latent fits each fixation's rates, not its gaze"
            )
        return "; ".join(why)


#: a held-out fixation agrees when its spike-only gaze is within this many σ of the
#: tracker's expected gaze; the correction needs this fraction of fixations to agree
AGREEMENT_RADIUS = 2.5
MIN_AGREEMENT = 0.5
#: the spike-only window's half-width: 6σ (at least 12 cells), so that chance is small
AGREEMENT_WINDOW_SIGMAS = 6.0
#: fixations of a fold whose agreement is scored, at most: evenly spaced over the session
#: beyond it, so the check's cost stops growing with length (the fraction's SE is then
#: at most 0.5/√2000 = 1.1 points over both folds, against a threshold of 50%)
AGREEMENT_MAX_FIXATIONS = 1000


def _fit_fields(data: GazeData, template: PoissonLN, bins, xy, budget, max_iter: int):
    """Fresh fields (``template``'s penalties) fitted on ``bins`` at gaze ``xy (M, 2)``."""
    resp = PoissonLN(
        data.n_units,
        template.patch_size,
        template.n_lags,
        template.nonlinearity,
        template.l2,
        template.smooth,
    ).to(template.rf)
    resp.initialize_bias(data.counts[bins].to(torch.float64).mean(0))
    ones = torch.ones(bins.numel(), dtype=torch.float64)
    batches = Batches(data, resp, budget).sparse_pair_batches(bins, xy, ones, cache=True)
    maximize_weighted(resp, batches, max_iter=max_iter)
    return resp


def _loglik(
    data: GazeData, resp: PoissonLN, bins, xy, budget, check: PredictiveCheck
) -> torch.Tensor:
    """``(M,)`` float64 log-likelihood of each bin's spikes at gaze ``xy (M, 2)``; the
    predicted and observed counts go to ``check``."""
    ones = torch.ones(bins.numel(), dtype=torch.float64)
    out = []
    with torch.no_grad():
        for x, y, _, _ in Batches(data, resp, budget).sparse_pair_batches(bins, xy, ones, False)():
            drive = resp.drive(x)
            out.append(poisson_log_prob(y, drive, resp.nonlinearity).sum(-1).double().cpu())
            check.add(resp.rate(drive), y)
    return torch.cat(out)


def _only(data: GazeData, bins: torch.Tensor) -> torch.Tensor:
    """``(T,)`` response weights that let only the spikes of ``bins`` into an E-step."""
    weight = torch.zeros(data.fixation.numel(), dtype=torch.float64)
    weight[bins.cpu()] = 1.0
    return weight


def _reinfer(problem, resp: PoissonLN, seen_bins: torch.Tensor) -> np.ndarray:
    """``(T, 2)`` per-bin posterior mean (px) from the spikes of ``seen_bins`` only."""
    data = problem.data
    infer = type(problem)(
        data,
        problem.grid,
        copy.deepcopy(problem.tracker),
        problem.cell_prior,
        resp,
        None,
        problem.settings,
    )
    for name in ("sigma_drift", "sigma_sacc"):
        if hasattr(problem, name):
            setattr(infer, name, getattr(problem, name))
    getattr(infer, "base", infer).response_weight = _only(data, seen_bins)
    with torch.no_grad():
        return infer.e_step().posterior.per_bin(data, infer.tracker)["mean"]


def tracker_agreement(
    problem, fields: PoissonLN, test_bins: torch.Tensor, test_fix: torch.Tensor
) -> tuple[int, float, int]:
    """Do the spikes alone put held-out fixations where the tracker does?

    Each fixation in ``test_fix`` (at most :data:`AGREEMENT_MAX_FIXATIONS`, evenly
    spaced) gets its gaze from the spikes of ``test_bins`` only, under ``fields``, with a
    flat prior over a window of half-width 6σ about the tracker's expected gaze (the
    tracker term is left out). Returns ``(hits, chance, n)``: how many
    best cells lie within 2.5σ of the expected gaze, how many a uniformly drawn cell of
    each window would give (summed probabilities), and the number of fixations.
    """
    base = getattr(problem, "base", problem)
    data: GazeData = base.data
    fsel = torch.unique(test_fix).cpu()
    if fsel.numel() > AGREEMENT_MAX_FIXATIONS:
        pick = torch.linspace(0, fsel.numel() - 1, AGREEMENT_MAX_FIXATIONS).round().long()
        fsel = fsel[pick]
        test_bins = test_bins[torch.isin(test_fix, fsel.to(test_fix.device))]
    sigma = float(base.tracker.sigma)
    flat = copy.deepcopy(base.tracker)
    flat.sigma = 1e6  # the tracker's log-density is flat over any window
    half = max(12, math.ceil(AGREEMENT_WINDOW_SIGMAS * sigma))
    half = min(half, (base.grid.width - 1) // 2, (base.grid.height - 1) // 2)
    settings = dataclasses.replace(
        base.settings, estep=dataclasses.replace(base.settings.estep, mode="exact")
    )
    infer = FixationProblem(data, base.grid, flat, base.cell_prior, fields, None, settings)
    # windows centred on the fitted tracker's expected gaze (the flat one's are not)
    infer.windows = lambda drawn_keys=None: make_windows(data, base.tracker, base.grid, half)
    infer.response_weight = _only(data, test_bins)
    with torch.no_grad():
        post = infer.e_step().posterior
    win = post.windows
    cells = win.cells.cpu().to(torch.float64)[fsel]
    expected = expected_positions(data, base.tracker)[fsel]
    best = post.log_q.cpu()[fsel].argmax(1)
    dist = (cells[torch.arange(fsel.numel()), best] - expected).norm(dim=1)
    radius = AGREEMENT_RADIUS * sigma
    support = win.support.cpu()[fsel]
    near = ((cells - expected[:, None, :]).norm(dim=2) <= radius) & support
    chance = float((near.sum(1) / support.sum(1).clamp_min(1)).sum())
    return int((dist <= radius).sum()), chance, int(fsel.numel())


def heldout_comparison(
    problem, raw_cells: torch.Tensor, corrected: np.ndarray, max_iter: int = 100
) -> HeldOut | None:
    """Corrected gaze against the raw trace on held-out fixations and bins.

    Parameters
    ----------
    problem
        The fitted :class:`~gazeem.gaze.fixation.FixationProblem` or
        :class:`~gazeem.gaze.drift.DriftProblem` (its tracker, drift SDs and window as EM
        left them; nothing is changed).
    raw_cells
        ``(F, 2)`` int64 stimulus px: each fixation's raw reading, as the raw-trace fit saw it.
    corrected
        ``(T, 2)`` stimulus px: the fit's corrected gaze per bin (posterior means).

    Returns ``None`` for a response model other than :class:`PoissonLN`, or fewer than
    four fixations.
    """
    data: GazeData = problem.data
    if not isinstance(problem.response, PoissonLN) or data.n_fixations < 4:
        return None
    budget = problem.settings.memory
    bins = data.fit_bins
    fix = data.fixation[bins]
    n_per = torch.bincount(fix, minlength=data.n_fixations)
    within = torch.arange(bins.numel(), device=bins.device) - (torch.cumsum(n_per, 0) - n_per)[fix]
    parity = (within % 2).to(bins.device)
    test_fold = fix % 2
    raw_xy = raw_cells.to(bins.device, torch.int64)[fix]
    corr_xy = torch.as_tensor(np.rint(corrected[bins.cpu().numpy()]), dtype=torch.int64)
    corr_xy = corr_xy.to(bins.device)
    ll_raw = torch.zeros(bins.numel(), dtype=torch.float64)
    ll_corr = torch.zeros(bins.numel(), dtype=torch.float64)
    check_raw, check_corr = PredictiveCheck(), PredictiveCheck()
    hits, chance, n_agree = 0, 0.0, 0
    for k in (0, 1):
        test = test_fold == k
        train = ~test
        fields = _fit_fields(data, problem.response, bins[train], corr_xy[train], budget, max_iter)
        h, c, n = tracker_agreement(problem, fields, bins[test], fix[test])
        hits, chance, n_agree = hits + h, chance + c, n_agree + n
        raw_fields = _fit_fields(
            data, problem.response, bins[train], raw_xy[train], budget, max_iter
        )
        ll_raw[test.cpu()] = _loglik(data, raw_fields, bins[test], raw_xy[test], budget, check_raw)
        for seen in (0, 1):
            mean = _reinfer(problem, fields, bins[test & (parity == seen)])
            scored = test & (parity != seen)
            xy = torch.as_tensor(np.rint(mean[bins[scored].cpu().numpy()]), dtype=torch.int64)
            ll_corr[scored.cpu()] = _loglik(
                data, fields, bins[scored], xy.to(bins.device), budget, check_corr
            )
    diff = torch.zeros(data.n_fixations, dtype=torch.float64)
    diff.index_add_(0, fix.cpu(), ll_corr - ll_raw)
    se = float(diff.std()) / math.sqrt(data.n_fixations)
    z = float(diff.mean()) / se if se > 0 else 0.0
    n_spikes = int(data.counts[bins].sum())
    return HeldOut(
        float(ll_raw.sum()),
        float(ll_corr.sum()),
        n_spikes,
        z,
        hits / n_agree,
        chance / n_agree,
        predictive_raw=check_raw,
        predictive_corrected=check_corr,
    )
