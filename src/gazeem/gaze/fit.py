"""``GazeFit``: what a fit learned, without the data it was learned from.

:class:`~gazeem.gaze.estimator.GazeEM` builds one at the end of ``fit`` from the
problem it solved; :func:`gazeem.gaze.result.fit_to_dataset` turns it (with the
session's coordinates) into the fit-result dataset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from gazeem.coords import StimulusGeometry
from gazeem.em.engine import EMState
from gazeem.gaze.data import GazeData
from gazeem.gaze.heldout import HeldOut
from gazeem.gaze.intervals import tail_probs
from gazeem.gaze.penalty import PenaltyChoice
from gazeem.gaze.posterior import GazePosterior, to_bins
from gazeem.gaze.windows import expected_positions
from gazeem.models.observation import TrackerModel


@dataclass
class GazeFit:
    """Parameters, posterior summaries and the EM trace of one fitted session.

    Positions are stimulus pixels (x = column, y = row); per-bin arrays are ``(T, 2)``
    with NaN outside fixations, per-fixation ones ``(F, ...)``.
    """

    latent: str
    offset_mode: str
    geometry: StimulusGeometry
    sigma: float
    gain: np.ndarray
    offset: np.ndarray
    rf: np.ndarray | None
    bias: np.ndarray | None
    rf_initial: np.ndarray | None
    bias_initial: np.ndarray | None
    gaze: dict[str, np.ndarray]
    fixations: dict[str, np.ndarray]
    fixation_of_bin: np.ndarray
    eye_px: np.ndarray
    examples: dict[str, np.ndarray]
    state: EMState
    #: ``(iterations + 1, 2)`` RMS and largest move of the fixations' posterior means per
    #: iteration, px (:class:`GazeMoves`)
    gaze_change: np.ndarray
    loglik_raw: float
    loglik_corrected: float
    n_spikes: int
    sigma_drift: float | None = None
    sigma_sacc: float | None = None
    #: ``(x, y)`` px the gaze moved after EM to centre the fields exactly (``offset: fields``)
    gauge_shift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    #: which latent was used and why (``latent: auto`` measures the trace's drift)
    latent_reason: str = ""
    #: tempered M-steps before EM (:mod:`gazeem.gaze.anneal`), and why or why not
    anneal_steps: int = 0
    anneal_reason: str = ""
    #: fixations cut in two after EM, where the spikes showed a saccade that the tracker
    #: reading did not (:mod:`gazeem.gaze.split`); ``fixations`` holds both parts
    n_split: int = 0
    #: the penalties the fields ended with, and their cross-validation (``smooth: cv``,
    #: ``l2: cv``; :class:`gazeem.gaze.penalty.PenaltyChoice`; ``None``: not run)
    smooth: float | None = None
    smooth_cv: PenaltyChoice | None = None
    l2: float | None = None
    l2_cv: PenaltyChoice | None = None
    #: ``(2,)`` standard error of the gain's columns (NaN when the gain is not learned)
    gain_se: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    #: corrected gaze against the raw trace on held-out fixations and bins (``None``: not run)
    heldout: HeldOut | None = None
    #: why the raw trace replaced the posterior ("" when it did not)
    correction_note: str = ""
    #: what the per-fixation posterior adds after EM (:mod:`gazeem.gaze.subpixel`):
    #: ``n_subpixel``, the fields' noise (px² per axis) for the refined and the
    #: whole-pixel fixations, the tracker's drift (px² per bin); NaN where not run
    uncertainty: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def bits_per_spike_gain(self) -> float:
        """``(loglik_corrected − loglik_raw) / (n_spikes · ln 2)``."""
        return (self.loglik_corrected - self.loglik_raw) / max(self.n_spikes, 1) / np.log(2)


def rf_and_bias(response: torch.nn.Module) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The response model's ``rf`` and ``bias`` as float64 arrays (``None`` if it has none)."""
    rf = getattr(response, "rf", None)
    bias = getattr(response, "bias", None)
    return (
        None if rf is None else rf.detach().cpu().double().numpy().copy(),
        None if bias is None else bias.detach().cpu().double().numpy().copy(),
    )


def example_posteriors(
    post: GazePosterior, data: GazeData, tracker: TrackerModel, n_examples: int = 6
) -> dict[str, np.ndarray]:
    """The posterior over the window cells of a few fixations, evenly spaced in the session.

    ``pick (E,)`` fixation indices, ``q (E, side, side)``, ``cells (E, K, 2)`` stimulus px,
    ``reading`` and ``expected`` ``(E, 2)`` stimulus px; empty when every fixation is a
    calibration fixation.
    """
    regular = np.flatnonzero(~data.is_calibration.numpy())
    if regular.size == 0:
        return {}
    pick = regular[
        np.linspace(0, regular.size - 1, min(n_examples, regular.size)).round().astype(int)
    ]
    side = post.windows.side
    center = data.geometry.center_px
    return {
        "pick": pick,
        "fix_id": data.fix_ids[pick].astype(np.int64),
        "q": post.log_q.exp().cpu().numpy()[pick].reshape(-1, side, side),
        "cells": post.windows.cells.cpu().numpy()[pick].astype(np.float64),
        "reading": data.fix_reading.numpy()[pick] + center,
        "expected": tracker.invert(data.fix_reading[pick]).numpy() + center,
    }


def build_fit(
    *,
    latent: str,
    offset_mode: str,
    data: GazeData,
    post: GazePosterior,
    tracker: TrackerModel,
    response: torch.nn.Module,
    initial: tuple[np.ndarray | None, np.ndarray | None],
    state: EMState,
    loglik_raw: float,
    gaze_change: np.ndarray,
    viterbi: np.ndarray | None = None,
    sigma_drift: float | None = None,
    sigma_sacc: float | None = None,
) -> GazeFit:
    """Everything the fit result needs, read off the solved problem once."""
    gaze = post.per_bin(data, tracker)
    if viterbi is not None:
        gaze["viterbi"] = to_bins(data, viterbi)
    fixations = post.per_fixation(data, tracker)
    fixations["id"] = data.fix_ids
    fixations["calibration"] = data.is_calibration.numpy()
    rf, bias = rf_and_bias(response)
    return GazeFit(
        latent=latent,
        offset_mode=offset_mode,
        geometry=data.geometry,
        sigma=tracker.sigma,
        gain=tracker.gain.numpy().copy(),
        offset=tracker.offset.numpy().copy(),
        rf=rf,
        bias=bias,
        rf_initial=initial[0],
        bias_initial=initial[1],
        gaze=gaze,
        fixations=fixations,
        fixation_of_bin=data.fixation.cpu().numpy(),
        eye_px=data.eye_px,
        examples=example_posteriors(post, data, tracker),
        state=state,
        gaze_change=gaze_change,
        loglik_raw=loglik_raw,
        loglik_corrected=post.expected_response_loglik,
        n_spikes=int(data.counts[data.fit_bins].sum()),
        sigma_drift=sigma_drift,
        sigma_sacc=sigma_sacc,
        uncertainty=uncertainty_terms(post),
    )


def uncertainty_terms(post: GazePosterior | None) -> dict[str, float]:
    """The terms :func:`gazeem.gaze.subpixel.refine_subpixel` added to ``post`` (NaN and
    0 sub-pixel fixations where it did not run)."""
    rows = getattr(post, "rows", None)
    return {
        "n_subpixel": 0 if rows is None else int(rows.numel()),
        "field_noise_px2_subpixel": float(getattr(post, "field_var", np.nan)),
        "field_noise_px2_whole": float(getattr(post, "whole_field_var", np.nan)),
        "tracker_drift_px2_per_bin": float(getattr(post, "drift_px2_per_bin", np.nan)),
    }


def move_gauge(fit: GazeFit, shift: tuple[float, float], tracker, response) -> GazeFit:
    """``fit`` with every gaze position moved by ``shift (x, y)`` pixels, after
    :func:`gazeem.gaze.gauge.subpixel_gauge` moved ``tracker``'s offset and ``response``'s
    fields by it; the posterior's spread (SD, entropy, window mass) does not change."""
    m = np.asarray(shift, dtype=np.float64)
    for summary in (fit.gaze, fit.fixations):
        for key in ("mean", "map", "viterbi"):
            if key in summary:
                summary[key] = summary[key] + m
    for key in ("lower", "upper"):
        fit.gaze[key] = fit.gaze[key] + m[:, None]
    for key in ("cells", "expected"):
        if key in fit.examples:
            fit.examples[key] = fit.examples[key] + m
    fit.offset = tracker.offset.numpy().copy()
    fit.rf, fit.bias = rf_and_bias(response)
    fit.gauge_shift = m
    return fit


def fall_back_to_trace(
    fit: GazeFit,
    data: GazeData,
    z0: torch.Tensor,
    sigma: float,
    where: str,
    tracker: TrackerModel,
) -> GazeFit:
    """The correction is not supported (:mod:`gazeem.gaze.heldout`): warn, and report the
    raw trace that it failed to beat.

    ``z0 (F, 2)`` stimulus px is each fixation's raw gaze (the reading under the starting
    tracker, as the raw-trace fit saw it); each bin keeps its own reading about it. The SD
    per axis is ``√(sigma² + s²)``: the stated tracker error ``sigma`` (px) and ``s``, the
    RMS over fixations of how far EM's ``tracker`` moved the expected gaze from the
    reading (its calibration). The data did not confirm that calibration, so it widens
    the interval rather than moving the mean: a raw trace is off by its calibration
    offset, which the stated error alone leaves out (on one minute of photographs its
    95% interval covered 72% of bins). EM's σ is not used: without gaze information in
    the responses it is not identified (on counts shuffled in time EM inflated it from
    2.1 to 7.8 px).
    """
    h = fit.heldout
    with torch.no_grad():
        moved = (expected_positions(data, tracker) - z0).numpy()
    calib = np.sqrt(np.mean(moved**2, axis=0))
    sd = np.sqrt(float(sigma) ** 2 + calib**2)  # (2,) px
    fit.correction_note = (
        f"{where}: field 'gaze': {h.reason}. The responses do not support a correction: "
        "the reported gaze is the raw trace, its SD per axis "
        f"({sd[0]:.2f}, {sd[1]:.2f}) px the stated tracker error (sigma_init = {sigma} px) "
        f"and the calibration EM estimated but the data did not confirm "
        f"(({calib[0]:.2f}, {calib[1]:.2f}) px RMS); EM's own posterior is not reported."
    )
    warnings.warn(fit.correction_note, UserWarning, stacklevel=3)
    center = np.asarray(data.geometry.center_px, dtype=np.float64)
    shift = z0.numpy() - (data.fix_reading.numpy() + center)  # (F, 2): starting tracker
    fix = data.fixation.cpu().numpy()
    fitted = np.isfinite(fit.gaze["mean"]).all(1)
    per_bin = np.full_like(fit.gaze["mean"], np.nan)
    per_bin[fitted] = np.asarray(data.eye_px)[fitted] + shift[fix[fitted]]
    for key in ("mean", "map", "viterbi"):
        if key in fit.gaze:
            fit.gaze[key] = per_bin.copy()
    fit.gaze["sd"] = np.where(np.isfinite(per_bin), sd, np.nan)
    z = torch.special.ndtri(tail_probs()).numpy()  # the Gaussian's central intervals
    half = fit.gaze["lower"].shape[-1]
    fit.gaze["lower"] = per_bin[..., None] + sd[:, None] * z[:half]
    fit.gaze["upper"] = per_bin[..., None] + sd[:, None] * z[half:]
    fit.fixations["mean"], fit.fixations["map"] = z0.numpy().copy(), z0.numpy().copy()
    fit.fixations["sd"] = np.broadcast_to(sd, z0.shape).copy()
    fit.uncertainty = uncertainty_terms(None)  # EM's posterior is not the one reported
    return fit
