"""Checks of a session against the fit settings, and of the fitted tracker gain.

Settings alone are checked by the estimator's constraints table; these need the data:
a patch larger than the stimulus, more lags than frames, too few usable bins or
fixations (an error, or a warning recorded in the fit), and after the fit a gain that
no tracker has (a flipped or swapped axis, a wrong ppd).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import NamedTuple

import numpy as np

from gazeem.errors import GazeemError
from gazeem.gaze.data import GazeData

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


def check_data(
    data: GazeData, where: str, *, patch_size: int, n_lags: int, learn_gain: bool
) -> tuple[str, ...]:
    """Data-dependent checks: settings that the session cannot support.

    Raises :class:`GazeemError` naming ``where`` and the field; returns the warnings
    (also logged) for the fit result's ``data_warnings``.
    """
    rows, cols = data.geometry.shape
    if patch_size > min(rows, cols):
        raise GazeemError(
            f"{where}: field 'patch_size': {patch_size} px is larger than the "
            f"{cols}x{rows} px stimulus; a receptive field must fit inside it."
        )
    n_frames = data.frames.shape[0]
    if n_lags > n_frames:
        raise GazeemError(
            f"{where}: field 'n_lags': {n_lags} lags need at least as many stimulus "
            f"frames; the session has {n_frames}."
        )
    n_fit, n_bins = int(data.fit_bins.numel()), int(data.fixation.numel())
    if n_fit < MIN_FIT_BINS or n_fit < MIN_FIT_FRACTION * n_bins:
        raise GazeemError(
            f"{where}: field 'fixation': only {n_fit} of {n_bins} bins lie in fixations with a "
            f"valid eye trace (at least {MIN_FIT_BINS} and {MIN_FIT_FRACTION:.0%} are needed); "
            "check eye_valid, the blinks and ingest's min_valid_fraction."
        )
    need = MIN_FIXATIONS_FOR_GAIN if learn_gain else MIN_FIXATIONS
    if data.n_fixations < need:
        raise GazeemError(
            f"{where}: field 'fixation': {data.n_fixations} fixations are too few to fit the "
            f"tracker ({need} needed{' for its gain' if learn_gain else ''}); "
            + ("set learn_gain: false, or " if learn_gain else "")
            + "check the saccade detection (ingest's saccade_velocity_deg_s)."
        )
    notes = []
    if n_fit < WARN_FIT_FRACTION * n_bins:
        notes.append(
            f"only {n_fit} of {n_bins} bins ({n_fit / n_bins:.0%}) are in fixations with a "
            "valid eye trace; the fit uses those alone"
        )
    if learn_gain and data.n_fixations < WARN_FIXATIONS_FOR_GAIN:
        notes.append(
            f"{data.n_fixations} fixations determine the tracker's 6 affine parameters "
            "poorly; consider learn_gain: false"
        )
    for note in notes:
        log.warning("%s: %s", where, note)
    return tuple(notes)


def check_gain(gain: np.ndarray, where: str) -> str:
    """The likely cause when the fitted gain cannot be a tracker's (``""`` when fine).

    A negative diagonal entry or determinant means a flipped axis; off-diagonal entries
    larger than the diagonal mean swapped axes; singular values outside
    ``GAIN_SCALE_RANGE`` mean a wrong ppd. A warning is issued; ``gazeem fit`` stops.
    """
    a = np.asarray(gain, dtype=np.float64)
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
    warnings.warn(msg, TrackerGainWarning, stacklevel=4)
    return msg


#: a gain whose standard error exceeds this is noise more than calibration
MAX_GAIN_SE = 0.05


def gain_standard_error(sigma: float, positions: np.ndarray) -> np.ndarray:
    """``(2,)`` standard error of each column of the gain, ``σ / (SD of gaze · √F)``.

    ``positions (F, 2)`` per-fixation gaze (px), ``σ`` the tracker's per-fixation error (px):
    a regression of the readings on the gaze cannot do better than this, whatever the method.
    """
    z = np.asarray(positions, dtype=np.float64)
    z = z[np.isfinite(z).all(1)]
    spread = z.std(axis=0) if len(z) > 1 else np.zeros(2)
    with np.errstate(divide="ignore"):
        return float(sigma) / (spread * np.sqrt(max(len(z), 1)))


def assess_gain(fit, where: str, notes: tuple[str, ...]) -> tuple[str, ...]:
    """Set ``fit.gain_se``; warn, and add to ``notes``, when the gain is poorly determined."""
    fit.gain_se = gain_standard_error(fit.sigma, fit.fixations["mean"])
    note = gain_note(fit.gain_se, len(fit.fixations["mean"]))
    if not note:
        return notes
    warnings.warn(f"{where}: {note}", UserWarning, stacklevel=3)
    return (*notes, note)


def gain_note(se: np.ndarray, n_fix: int) -> str:
    """A data warning when the gain is poorly determined (``""`` otherwise)."""
    if not (np.max(se) > MAX_GAIN_SE):
        return ""
    return (
        f"field 'gain': the tracker gain is poorly determined (standard error "
        f"{np.max(se):.3f} > {MAX_GAIN_SE}) because the gaze spreads little over {n_fix} "
        "fixations (a fixation task?); its entries are noise more than calibration. Set "
        "learn_gain: false, or add calibration fixations on spread-out targets."
    )


#: the per-fixation latent follows the eye's motion within a fixation as far as the
#: tracker resolves it (``posterior.within_fixation_motion``: the reading's deviation from
#: its fixation mean, Wiener-weighted against the reading's jitter); once what it cannot
#: follow (2-D RMS) reaches 0.2 px, ``latent: auto`` takes the per-bin chain, whose states
#: follow the motion through the spikes. Measured on 2-minute sessions (docs/architecture.md,
#: "Per-bin gaze"): at 0.12 px left unresolved the two latents were equally accurate, at
#: 0.20 and 0.26 px the chain's error was lower or its intervals calibrated where the
#: per-fixation ones under-covered; where the tracker resolves the motion (a 1 kHz tracker:
#: 0 px left) the per-fixation latent was a third more accurate than the chain
UNRESOLVED_RMS_FOR_BIN = 0.2


class TraceDrift(NamedTuple):
    """The eye's motion within fixations as the tracker trace shows it (px, 2-D RMS)."""

    rms: float  #: the drift's spread about a fixation's mean
    bins: float  #: the median fixation's length (bins)
    jitter: float  #: the reading's white noise per bin
    unresolved: float  #: what the reading cannot follow: ``sqrt(M j / (M + j))``


def within_fixation_drift(data) -> TraceDrift:
    """The drift within fixations, and how much of it the reading resolves.

    The mean squared displacement of the reading between bins of one fixation, at lags 1
    and 5: white tracker jitter adds the same ``2j`` to both, a random walk ``lag`` times
    its step variance, so ``(MSD(5) − MSD(1)) / 4`` is the drift's step variance ``s``
    (2-D) and ``(MSD(1) − s) / 2`` the jitter's ``j``. A random walk of ``n`` steps spreads
    about its mean by ``M = s · n / 6``; the Wiener weight ``M / (M + j)`` of the
    per-fixation latent leaves ``M j / (M + j)`` of it unfollowed.
    """
    eye = np.asarray(data.eye_px, dtype=np.float64)
    fix = data.fixation.cpu().numpy()
    counts = np.bincount(fix[fix >= 0])
    n = float(np.median(counts[counts > 0])) if (counts > 0).any() else 0.0

    def msd(lag: int) -> float:
        same = (fix[:-lag] == fix[lag:]) & (fix[:-lag] >= 0)
        d = (eye[lag:] - eye[:-lag])[same]
        d = d[np.isfinite(d).all(1)]
        return float((d**2).sum(1).mean()) if len(d) else np.nan

    m1, m5 = msd(1), msd(5)
    if not (np.isfinite(m1) and np.isfinite(m5)):
        return TraceDrift(0.0, n, 0.0, 0.0)
    step_var = max((m5 - m1) / 4, 0.0)
    jitter = max((m1 - step_var) / 2, 0.0)
    spread = step_var * n / 6
    left = spread * jitter / (spread + jitter) if spread + jitter > 0 else 0.0
    return TraceDrift(math.sqrt(spread), n, math.sqrt(jitter), math.sqrt(left))


def choose_latent(data, estep: str, prior: str) -> tuple[str, str]:
    """``latent: auto``: the latent for these data, and why (recorded in the fit)."""
    if estep != "exact" or prior == "counts":
        return "fixation", f"auto: estep={estep}, prior={prior} need the per-fixation latent"
    drift = within_fixation_drift(data)
    verdict = "bin" if drift.unresolved >= UNRESOLVED_RMS_FOR_BIN else "fixation"
    cmp = ">=" if verdict == "bin" else "<"
    return verdict, (
        f"auto: the tracker trace drifts {drift.rms:.2f} px RMS about a fixation's mean "
        f"(median fixation {drift.bins:.0f} bins) under {drift.jitter:.2f} px of jitter a "
        f"bin, which leaves {drift.unresolved:.2f} px that the reading does not follow, "
        f"{cmp} {UNRESOLVED_RMS_FOR_BIN:.2f} px"
    )
