"""The translation gauge of ``offset: fields``: where the population's fields sit.

A common shift of every gaze position and every receptive field leaves the responses'
likelihood unchanged, so the fit fixes it by the declared receptive-field region: the
population's energy centroid sits at the patch centre. Before EM the fields are moved by
whole pixels (:meth:`gazeem.gaze.fixation.FixationProblem.recentre_fields`); after every
M-step and once more after EM, :func:`subpixel_gauge` removes the remainder to a fraction
of a pixel, so that EM does not creep along this nearly flat direction
(:meth:`gazeem.gaze.fixation.FixationProblem.hold_gauge`).
"""

from __future__ import annotations

import math

import torch


def energy_centroid(rf: torch.Tensor) -> tuple[float, float]:
    """``(x, y)`` pixels of the fields' energy centroid from the patch centre ``P // 2``.

    ``rf (N, lags, P, P)``; energy is ``rf²`` summed over units and lags.
    """
    e = (rf.detach().to(torch.float64) ** 2).sum((0, 1))
    p = e.shape[0]
    d = torch.arange(p, dtype=torch.float64) - p // 2
    total = float(e.sum())
    if total <= 0:
        return (0.0, 0.0)
    return float((e.sum(0) * d).sum()) / total, float((e.sum(1) * d).sum()) / total


def fourier_shift(rf: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """``rf (..., P, P)`` moved by ``(dx, dy)`` pixels (x = columns, y = rows), any fraction.

    Band-limited (sinc) interpolation: a whole-pixel move is exact up to the wrap at the
    edges, where smooth, centred fields are near zero.
    """
    p = rf.shape[-1]
    k = torch.fft.fftfreq(p, dtype=torch.float64)
    phase = torch.exp(-2j * math.pi * (k[None, :] * dx + k[:, None] * dy))
    out = torch.fft.ifft2(torch.fft.fft2(rf.detach().to(torch.float64)) * phase).real
    return out.to(rf.dtype)


def subpixel_gauge(response: torch.nn.Module, tracker) -> tuple[float, float]:
    """Centre the fields exactly: move them by ``−m`` (their centroid) and ``b`` by ``−A m``.

    Returns ``m (x, y)`` pixels, by which every gaze position of the fit then moves.
    """
    rf = getattr(response, "rf", None)
    if rf is None:
        return (0.0, 0.0)
    mx, my = energy_centroid(rf)
    with torch.no_grad():
        rf.copy_(fourier_shift(rf, -mx, -my))
    m = torch.tensor([mx, my], dtype=torch.float64)
    tracker.offset = tracker.offset - tracker.gain @ m
    return (mx, my)


#: rounds of re-centring the fields before EM (``offset: fields``); each moves them by
#: their whole-pixel centroid and refits them, so two or three suffice
MAX_RECENTRING = 5


def centre_initial_fields(problem) -> None:
    """Before EM (``offset: fields``): move gaze and fields until the fields sit centred
    on their region, refitting them at each step so that none is left cut by the edge."""
    from gazeem.gaze.windows import expected_positions

    base = getattr(problem, "base", problem)
    for _ in range(MAX_RECENTRING):
        if problem.recentre_fields() == (0, 0):
            return
        z = expected_positions(base.data, base.tracker)
        problem.fit_response_on_positions(torch.round(z).to(torch.int64))
