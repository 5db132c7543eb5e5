"""Simulated recording sessions with known ground truth.

A session has white-noise frames or photographs held for seconds, units with Gabor-like receptive fields
and Poisson spiking, fixations separated by saccades, fixational drift, blinks,
and an eye tracker with per-fixation error, per-sample jitter, a calibration
offset and an affine gain error. The output follows the session contract
(``docs/data-format.md``) and also carries the truth (``true_*`` variables and
attributes), which the tests, the demo and the figures use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import xarray as xr

from gazeem import __version__
from gazeem.coords import StimulusGeometry, spread_rounding
from gazeem.errors import GazeemError
from gazeem.gaze.patches import FrameSource, gather_crops, lagged_frame_index
from gazeem.memory import check_allocation


@dataclass
class SimulationConfig:
    """Parameters of a simulated session. Distances are in stimulus pixels unless noted."""

    session: str = "sim"
    n_bins: int = 6000
    bin_s: float = 1 / 60
    stim_rows: int = 64
    stim_cols: int = 64
    frame_hold: int = 1  # bins per stimulus frame
    stimulus: str = "binary"  # binary (±1) or gaussian (unit variance) noise, or "images"
    #: ``stimulus="images"``: ``(n_images, stim_rows, stim_cols)`` photographs (any range);
    #: frame ``f`` shows image ``f mod n_images``, standardised to zero mean and unit SD over
    #: the image, so that local contrast varies across the screen as in the photograph
    images: np.ndarray | None = field(default=None, repr=False)
    ppd: float = 20.0
    stim_center_deg: tuple[float, float] = (2.0, -1.0)
    n_units: int = 30
    patch_size: int = 20
    n_lags: int = 1
    lag_weights: tuple[float, ...] = (1.0,)
    rf_sigma_px: tuple[float, float] = (2.0, 3.2)  # Gaussian envelope SD
    rf_cycles: tuple[float, float] = (0.3, 0.6)  # carrier cycles per 2.5 envelope SDs
    rf_spread_px: float = 2.0  # RF centres uniform in ±spread about the patch centre
    rf_norm: float = 1.0  # L2 norm of each RF: drive SD for unit-variance noise
    #: subtract each Gabor's mean under its envelope, so that it does not respond to mean
    #: luminance (as V1 simple cells; matters for photographs, not for zero-mean noise)
    rf_zero_mean: bool = False
    rate_hz: tuple[float, float] = (10.0, 40.0)
    fixation_bins: tuple[int, int] = (12, 30)
    saccade_bins: tuple[int, int] = (1, 3)
    gaze_range_px: float = 20.0  # fixations uniform within ± this of the stimulus centre
    drift_px_per_bin: float = 0.05
    blink_prob: float = 0.04  # chance that a fixation is followed by a blink
    blink_bins: tuple[int, int] = (6, 15)
    tracker_sigma_px: float = 3.0  # per-fixation tracker error SD
    tracker_jitter_px: float = 0.3  # per-sample tracker noise SD
    tracker_offset_px: tuple[float, float] = (4.0, -3.0)
    tracker_gain: tuple[tuple[float, float], tuple[float, float]] = ((1.03, 0.01), (-0.01, 0.97))
    # the units' receptive-field region relative to the gaze point (x right, y down): the
    # gaze wanders about the stimulus centre minus this, so the fields see the stimulus
    rf_offset_px: tuple[float, float] = (0.0, 0.0)
    #: "free" viewing (fixations anywhere in ±gaze_range_px), or a "fixation" task: trials
    #: of trial_s seconds on a spot at the centre (minus rf_offset_px), with fixational
    #: drift and microsaccades, a blink between trials, and the tracker error constant over
    #: each trial (the ``fixation`` labels are trials); published statistics as defaults
    task: str = "free"
    trial_s: tuple[float, float] = (1.0, 10.0)
    microsaccade_hz: float = 1.5
    microsaccade_deg: tuple[float, float] = (0.1, 0.5)
    #: fixational drift's diffusion constant, arcmin²/s (⟨r²⟩ = 4 D t)
    drift_arcmin2_s: float = 20.0
    #: the tracker error's own slow drift, px per √s per axis (0: constant over a trial)
    tracker_drift_px_s: float = 0.0
    #: ``task="fixation"``: simulate the eye and the tracker at this rate (0: once per bin),
    #: ``round(eye_rate_hz · bin_s)`` samples per bin, microsaccades as minimum-jerk
    #: movements of ``12 + 20·A`` ms (A in degrees; the microsaccadic main sequence) and
    #: ``tracker_jitter_px`` the noise of each sample. The session then also carries the
    #: samples (``eye_trace``), which the NWB and HDF5 writers write instead of the bins
    eye_rate_hz: float = 0.0
    n_calibration: int = 0  # fixations on known targets (a 3x3 grid of points)
    calibration_spacing_px: int = 12
    #: leave the targets where the grid puts them, on pixel edges for an even-sized
    #: stimulus, each bin then shown on one side or the other, half the bins each
    calibration_on_pixel_edges: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)


def gabor_rfs(cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """``(n_units, n_lags, P, P)`` Gabor receptive fields with L2 norm ``rf_norm``."""
    p = cfg.patch_size
    yy, xx = np.mgrid[0:p, 0:p].astype(np.float64)
    rfs = np.zeros((cfg.n_units, cfg.n_lags, p, p))
    lag_w = np.asarray(cfg.lag_weights, dtype=np.float64)[: cfg.n_lags]
    for n in range(cfg.n_units):
        cx, cy = p // 2 + rng.uniform(-cfg.rf_spread_px, cfg.rf_spread_px, size=2)
        s = rng.uniform(*cfg.rf_sigma_px)
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(*cfg.rf_cycles) / (2.5 * s)  # cycles per pixel
        phase = rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        env = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2))
        g = env * np.cos(2 * np.pi * freq * u + phase)
        if cfg.rf_zero_mean:
            g -= env * (g.sum() / env.sum())
        g *= cfg.rf_norm / np.linalg.norm(g) / np.linalg.norm(lag_w)
        rfs[n] = lag_w[:, None, None] * g[None]
    return rfs


def _gaze_sequence(cfg: SimulationConfig, rng: np.random.Generator):
    """True gaze (centred px), fixation labels, blink mask and calibration targets per bin."""
    t_total = cfg.n_bins
    gaze = np.zeros((t_total, 2))
    fixation = np.full(t_total, -1, dtype=np.int64)
    blink = np.zeros(t_total, dtype=bool)
    calib = np.full((t_total, 2), np.nan)
    sp = cfg.calibration_spacing_px
    targets = np.array([(x, y) for y in (-sp, 0, sp) for x in (-sp, 0, sp)], dtype=np.float64)
    # calibration fixations are spread evenly through the session
    n_fix_est = max(1, t_total // (sum(cfg.fixation_bins) // 2 + sum(cfg.saccade_bins) // 2))
    calib_slots = (
        set(np.linspace(0, n_fix_est - 1, cfg.n_calibration).astype(int).tolist())
        if cfg.n_calibration
        else set()
    )
    t, fid, pos = 0, 0, rng.uniform(-cfg.gaze_range_px, cfg.gaze_range_px, size=2)
    n_cal_done = 0
    while t < t_total:
        is_cal = fid in calib_slots and n_cal_done < cfg.n_calibration
        dur = int(rng.integers(cfg.fixation_bins[0], cfg.fixation_bins[1] + 1))
        end = min(t + dur, t_total)
        if is_cal:
            target = targets[n_cal_done % len(targets)]
            n_cal_done += 1
            # the saccade before landed near pos; a calibration fixation sits on its target
            gaze[t:end] = target
            calib[t:end] = target
            pos = target.copy()
        else:
            steps = rng.normal(0, cfg.drift_px_per_bin, size=(end - t, 2))
            steps[0] = 0
            gaze[t:end] = pos + np.cumsum(steps, axis=0)
            pos = gaze[end - 1].copy()
        fixation[t:end] = fid
        fid += 1
        t = end
        if t >= t_total:
            break
        new = rng.uniform(-cfg.gaze_range_px, cfg.gaze_range_px, size=2)
        if rng.random() < cfg.blink_prob:
            dur = int(rng.integers(cfg.blink_bins[0], cfg.blink_bins[1] + 1))
            end = min(t + dur, t_total)
            blink[t:end] = True
        else:
            dur = int(rng.integers(cfg.saccade_bins[0], cfg.saccade_bins[1] + 1))
            end = min(t + dur, t_total)
        frac = (np.arange(1, end - t + 1) / (end - t + 1))[:, None]
        gaze[t:end] = pos + frac * (new - pos)
        pos = new
        t = end
    return gaze, fixation, blink, calib


def _target_to_pixel_centre(
    calib_c: np.ndarray, geom: StimulusGeometry, rf_off: np.ndarray
) -> np.ndarray:
    """``(T, 2)`` px moving each calibration bin's target (and the gaze on it) to where its
    patch, at ``rint(gaze + rf_offset)``, sits on whole pixels; 0 on other bins.

    A whole-pixel patch cannot show a gaze on a pixel's edge, and an even-sized stimulus
    puts a centred grid of targets exactly there. ``np.rint`` showed every such target
    half a pixel to the same side (chosen by parity), while the session reported the
    edge, and the absolute offset a fit reads from them was biased by that much.
    ``calibration_on_pixel_edges`` keeps the edges and shows each bin on one side or the
    other, half the bins each (:func:`gazeem.coords.spread_rounding`).
    """
    cal = np.isfinite(calib_c[:, 0])
    shift = np.zeros_like(calib_c)
    if cal.any():
        at = geom.centered_to_px(calib_c[cal]) + rf_off
        shift[cal] = np.floor(at + 0.5) - at
    return shift


def _microsaccade_direction(pos: np.ndarray, cfg: SimulationConfig, rng) -> np.ndarray:
    """Unit vector of a microsaccade from ``pos`` (px from the spot): aimed back at the spot
    ±60° when the eye is more than 0.1° off it (microsaccades are corrective), else any."""
    ang = (
        np.arctan2(-pos[1], -pos[0]) + rng.normal(0, np.pi / 3)
        if np.hypot(*pos) > 0.1 * cfg.ppd
        else rng.uniform(0, 2 * np.pi)
    )
    return np.array([np.cos(ang), np.sin(ang)])


def _blink_end(t: int, t_total: int, cfg: SimulationConfig, rng) -> int:
    """The bin where a blink starting at bin ``t`` (between trials) ends."""
    return min(t + int(rng.integers(cfg.blink_bins[0], cfg.blink_bins[1] + 1)), t_total)


def _minimum_jerk(n: int) -> np.ndarray:
    """``(n,)`` fraction of a minimum-jerk movement completed after each of ``n`` samples."""
    tau = np.arange(1, n + 1) / n
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def _fixation_task_samples(cfg: SimulationConfig, rng: np.random.Generator):
    """:func:`_fixation_task_sequence` with the eye simulated ``k`` times per bin.

    Returns the per-bin gaze (the mean of its samples), trial labels, blink mask and
    targets, and the samples' gaze ``(T·k, 2)`` centred px.
    """
    k = max(1, round(cfg.eye_rate_hz * cfg.bin_s))
    dt = cfg.bin_s / k
    t_total = cfg.n_bins
    samples = np.zeros((t_total * k, 2))
    trial = np.full(t_total, -1, dtype=np.int64)
    blink = np.zeros(t_total, dtype=bool)
    drift_sd = np.sqrt(2 * cfg.drift_arcmin2_s * dt) / 60 * cfg.ppd  # px per sample per axis
    t, tid = 0, 0
    pos = np.zeros(2)
    while t < t_total:
        end = min(t + max(1, round(rng.uniform(*cfg.trial_s) / cfg.bin_s)), t_total)
        pos = rng.normal(0, 0.05 * cfg.ppd, size=2)  # landing near the spot
        i, stop_s = t * k, end * k
        while i < stop_s:
            if rng.random() < cfg.microsaccade_hz * dt:
                amp_deg = rng.uniform(*cfg.microsaccade_deg)
                n = round((0.012 + 0.020 * amp_deg) / dt)
                if i + n < stop_s:
                    move = amp_deg * cfg.ppd * _microsaccade_direction(pos, cfg, rng)
                    samples[i : i + n] = pos + _minimum_jerk(n)[:, None] * move
                    pos, i = pos + move, i + n
                    continue
            pos = pos + rng.normal(0, drift_sd, size=2)
            samples[i] = pos
            i += 1
        trial[t:end] = tid
        t, tid = end, tid + 1
        stop = _blink_end(t, t_total, cfg, rng)
        blink[t:stop] = True
        samples[t * k : stop * k] = pos
        t = stop
    gaze = samples.reshape(t_total, k, 2).mean(axis=1)
    return gaze, trial, blink, np.full((t_total, 2), np.nan), samples


#: the largest drive a photograph may give, in units of rf_norm (what noise gives at most)
PEAK_DRIVE_SD = 3.5


def _fixation_task_sequence(cfg: SimulationConfig, rng: np.random.Generator):
    """A fixation task: true gaze (centred px), trial labels, blink mask, no targets.

    Within a trial the eye drifts (a random walk with diffusion constant D) and makes
    microsaccades (Poisson, ``microsaccade_hz``) of ``microsaccade_deg``, aimed back at
    the spot ±60° when the eye is more than 0.1° off it (microsaccades are corrective),
    in a random direction otherwise; each lasts one or two bins.
    """
    t_total, b = cfg.n_bins, cfg.bin_s
    gaze = np.zeros((t_total, 2))
    trial = np.full(t_total, -1, dtype=np.int64)
    blink = np.zeros(t_total, dtype=bool)
    drift_sd = np.sqrt(2 * cfg.drift_arcmin2_s * b) / 60 * cfg.ppd  # px per bin per axis
    t, tid = 0, 0
    while t < t_total:
        end = min(t + max(1, round(rng.uniform(*cfg.trial_s) / b)), t_total)
        pos = rng.normal(0, 0.05 * cfg.ppd, size=2)  # landing near the spot
        i = t
        while i < end:
            if rng.random() < cfg.microsaccade_hz * b and i + 2 < end:
                amp = rng.uniform(*cfg.microsaccade_deg) * cfg.ppd
                new = pos + amp * _microsaccade_direction(pos, cfg, rng)
                dur = int(rng.integers(1, 3))
                frac = (np.arange(1, dur + 1) / (dur + 1))[:, None]
                gaze[i : i + dur] = pos + frac * (new - pos)
                trial[i : i + dur] = tid
                pos, i = new, i + dur
                continue
            pos = pos + rng.normal(0, drift_sd, size=2)
            gaze[i], trial[i] = pos, tid
            i += 1
        t, tid = end, tid + 1
        stop = _blink_end(t, t_total, cfg, rng)
        blink[t:stop] = True
        gaze[t:stop] = pos
        t = stop
    return gaze, trial, blink, np.full((t_total, 2), np.nan)


def _image_frames(cfg: SimulationConfig, n_frames: int) -> np.ndarray:
    """``(n_frames, rows, cols)`` float32: the photographs in turn, each standardised."""
    if cfg.images is None or np.ndim(cfg.images) != 3:
        raise GazeemError(
            "simulate settings: field 'images': stimulus='images' needs an array "
            "(n_images, stim_rows, stim_cols)."
        )
    imgs = np.asarray(cfg.images, dtype=np.float64)
    if imgs.shape[1:] != (cfg.stim_rows, cfg.stim_cols):
        raise GazeemError(
            f"simulate settings: field 'images': images are {imgs.shape[1:]}, the stimulus "
            f"is ({cfg.stim_rows}, {cfg.stim_cols})."
        )
    mean = imgs.mean(axis=(1, 2), keepdims=True)
    sd = imgs.std(axis=(1, 2), keepdims=True)
    if (sd == 0).any():
        raise GazeemError("simulate settings: field 'images': an image is uniform (SD 0).")
    imgs = ((imgs - mean) / sd).astype(np.float32)
    return imgs[np.arange(n_frames) % len(imgs)]


def _check_size(cfg: SimulationConfig) -> None:
    """Refuse sizes that are not positive, or that would not fit in memory."""
    for name in ("n_bins", "stim_rows", "stim_cols", "frame_hold", "n_units", "patch_size"):
        v = getattr(cfg, name)
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise GazeemError(
                f"simulate settings: field '{name}': must be an integer >= 1, got {v!r}."
            )
    if cfg.n_bins < 10:
        raise GazeemError(f"simulate settings: field 'n_bins': must be >= 10, got {cfg.n_bins}.")
    n_frames = math.ceil(cfg.n_bins / cfg.frame_hold)
    # frames (float32 plus int8 draws), per-bin arrays, counts and rates (float64)
    nbytes = n_frames * cfg.stim_rows * cfg.stim_cols * 5 + cfg.n_bins * (16 * cfg.n_units + 128)
    check_allocation(
        nbytes,
        "simulate settings",
        "n_bins",
        f"simulating {cfg.n_bins:,} bins of {cfg.stim_rows}x{cfg.stim_cols} px frames",
        "lower n_bins (or the stimulus size).",
    )


def simulate_session(cfg: SimulationConfig | None = None, **overrides) -> xr.Dataset:
    """Simulate one session; returns a contract-conforming :class:`xarray.Dataset` with truth.

    Extra variables: ``true_gaze`` (time, axis; degrees), ``true_rf``
    (unit, lag, rf_row, rf_col), ``true_bias`` (unit). Attributes ``true_sigma_px``,
    ``true_offset_px``, ``true_gain`` hold the tracker's true parameters
    (centred pixels, y down).
    """
    cfg = cfg or SimulationConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown simulation parameter {k!r}")
        setattr(cfg, k, v)
    _check_size(cfg)
    rng = np.random.default_rng(cfg.seed)
    geom = StimulusGeometry(cfg.ppd, tuple(cfg.stim_center_deg), (cfg.stim_rows, cfg.stim_cols))

    n_frames = math.ceil(cfg.n_bins / cfg.frame_hold)
    shape = (n_frames, cfg.stim_rows, cfg.stim_cols)
    if cfg.stimulus == "binary":
        stim = (rng.integers(0, 2, size=shape, dtype=np.int8) * 2 - 1).astype(np.float32)
    elif cfg.stimulus == "gaussian":
        stim = rng.standard_normal(size=shape, dtype=np.float32)
    elif cfg.stimulus == "images":
        stim = _image_frames(cfg, n_frames)
    else:
        raise ValueError(f"stimulus must be 'binary', 'gaussian' or 'images', got {cfg.stimulus!r}")
    frame = (np.arange(cfg.n_bins) // cfg.frame_hold).astype(np.int32)

    rfs = gabor_rfs(cfg, rng)
    rates = rng.uniform(*cfg.rate_hz, size=cfg.n_units) * cfg.bin_s
    bias = np.log(rates) - cfg.rf_norm**2 / 2  # mean rate ≈ rates under unit-variance noise

    samples_c = None
    if cfg.task == "fixation" and cfg.eye_rate_hz > 0:
        gaze_c, fixation, blink, calib_c, samples_c = _fixation_task_samples(cfg, rng)
    elif cfg.task == "fixation":
        gaze_c, fixation, blink, calib_c = _fixation_task_sequence(cfg, rng)
    elif cfg.task == "free":
        gaze_c, fixation, blink, calib_c = _gaze_sequence(cfg, rng)
    else:
        raise GazeemError(
            f"simulate settings: field 'task': 'free' or 'fixation', got {cfg.task!r}."
        )
    rf_off = np.asarray(cfg.rf_offset_px, dtype=np.float64)
    gaze_c, calib_c = gaze_c - rf_off, calib_c - rf_off
    if not cfg.calibration_on_pixel_edges:
        shift = _target_to_pixel_centre(calib_c, geom, rf_off)
        gaze_c, calib_c = gaze_c + shift, calib_c + shift
    if samples_c is not None:
        samples_c = samples_c - rf_off
    gaze_px = geom.centered_to_px(gaze_c)

    # spikes: drive from the patch at the (rounded) true gaze
    p = cfg.patch_size
    frames = FrameSource(torch.from_numpy(stim), torch.device("cpu"), torch.float32)
    rf_t = torch.from_numpy(rfs).float()
    counts = np.zeros((cfg.n_bins, cfg.n_units), dtype=np.int32)
    zi = np.rint(gaze_px + rf_off).astype(np.int64)  # the patch: at gaze + offset
    cal = np.isfinite(calib_c[:, 0])  # a target between pixels: shown on each side in turn
    zi[cal] = spread_rounding(gaze_px[cal] + rf_off, np.arange(int(cal.sum())))
    frame_t = torch.from_numpy(frame.astype(np.int64))
    drive = np.zeros((cfg.n_bins, cfg.n_units))
    for start in range(0, cfg.n_bins, 2048):
        bins = torch.arange(start, min(start + 2048, cfg.n_bins))
        fidx = lagged_frame_index(frame_t, bins, cfg.n_lags)
        top = torch.from_numpy(zi[bins.numpy(), 1] - p // 2)
        left = torch.from_numpy(zi[bins.numpy(), 0] - p // 2)
        x = gather_crops(frames, fidx, top, left, p)
        drive[bins.numpy()] = (x.flatten(1) @ rf_t.flatten(1).T).double().numpy()
    if cfg.stimulus == "images":
        # photographs have far more power at a field's low frequencies than white noise,
        # and a field's drive is sparse (heavy-tailed). Each field is scaled so that its
        # drive has SD rf_norm, as under unit-variance noise, unless its peak would then
        # exceed the peak that noise gives (3.5 SD; a real cell saturates near 30x its
        # mean rate): then the peak sets the scale, and the session's evidence is weaker.
        # The bias then gives each unit its mean rate exactly.
        centred = drive - drive.mean(axis=0)
        sd = np.maximum(centred.std(axis=0), 1e-12)
        peak = np.maximum(centred.max(axis=0), 1e-12)
        scale = cfg.rf_norm * np.minimum(1 / sd, PEAK_DRIVE_SD / peak)
        drive *= scale
        rfs *= scale[:, None, None, None]
        bias = np.log(rates) - np.log(np.exp(drive).mean(axis=0))
    for start in range(0, cfg.n_bins, 2048):
        stop = min(start + 2048, cfg.n_bins)
        counts[start:stop] = rng.poisson(np.exp(drive[start:stop] + bias))

    # tracker: per-fixation error + per-sample jitter, affine gain and offset
    gain = np.asarray(cfg.tracker_gain, dtype=np.float64)
    offset = np.asarray(cfg.tracker_offset_px, dtype=np.float64)
    # the error is constant within a fixation and changes smoothly across saccades and
    # blinks (it comes from slow processes: calibration drift, pupil size)
    fix_err = rng.normal(0, cfg.tracker_sigma_px, size=(fixation.max() + 1, 2))
    in_fix = np.flatnonzero(fixation >= 0)
    t_all = np.arange(cfg.n_bins)
    err = np.stack(
        [np.interp(t_all, in_fix, fix_err[fixation[in_fix], a]) for a in range(2)], axis=1
    )
    if cfg.tracker_drift_px_s > 0:  # calibration drifting slowly through the session
        step = cfg.tracker_drift_px_s * np.sqrt(cfg.bin_s)
        err = err + np.cumsum(rng.normal(0, step, size=err.shape), axis=0)
    trace = None
    if samples_c is None:
        reading_c = (
            gaze_c @ gain.T + offset + err + rng.normal(0, cfg.tracker_jitter_px, size=gaze_c.shape)
        )
    else:  # each sample read with its own noise; a bin's reading is its samples' mean
        k = samples_c.shape[0] // cfg.n_bins
        noise = rng.normal(0, cfg.tracker_jitter_px, size=samples_c.shape)
        trace_c = samples_c @ gain.T + offset + np.repeat(err, k, axis=0) + noise
        reading_c = trace_c.reshape(cfg.n_bins, k, 2).mean(axis=1)
        trace = geom.px_to_deg(geom.centered_to_px(trace_c))
        trace[np.repeat(blink, k)] = np.nan
        trace_t = (np.arange(trace.shape[0]) + 0.5) * (cfg.bin_s / k)
    eye = geom.px_to_deg(geom.centered_to_px(reading_c))
    eye[blink] = np.nan
    valid = ~blink
    fixation[blink] = -1
    calib_deg = geom.px_to_deg(geom.centered_to_px(calib_c))

    time = (np.arange(cfg.n_bins) + 0.5) * cfg.bin_s
    ds = xr.Dataset(
        {
            "counts": (
                ("time", "unit"),
                counts,
                {"units": "spikes/bin", "long_name": "spike count"},
            ),
            "eye": (("time", "axis"), eye, {"units": "degree", "long_name": "eye tracker gaze"}),
            "eye_valid": (("time",), valid, {"long_name": "tracker sample valid"}),
            "fixation": (
                ("time",),
                fixation.astype(np.int32),
                {"long_name": "fixation id (-1: none)"},
            ),
            "frame": (("time",), frame, {"long_name": "stimulus frame index (-1: none)"}),
            "stimulus": (
                ("frame", "row", "col"),
                stim,
                {"units": "1", "long_name": "stimulus contrast"},
            ),
            "true_gaze": (
                ("time", "axis"),
                geom.px_to_deg(gaze_px),
                {"units": "degree", "long_name": "true gaze"},
            ),
            "true_rf": (
                ("unit", "lag", "rf_row", "rf_col"),
                rfs.astype(np.float32),
                {"units": "1/contrast"},
            ),
            "true_bias": (("unit",), bias, {"units": "1"}),
        },
        coords={
            "time": ("time", time, {"units": "s", "long_name": "bin centre time"}),
            "unit": ("unit", np.arange(cfg.n_units, dtype=np.int64), {"long_name": "unit id"}),
            "axis": ("axis", np.array(["x", "y"])),
        },
    )
    if trace is not None:
        ds["eye_trace"] = (
            ("sample", "axis"),
            trace,
            {"units": "degree", "long_name": "eye tracker samples (NaN in blinks)"},
        )
        ds["eye_trace_time"] = (
            ("sample",),
            trace_t,
            {"units": "s", "long_name": "eye tracker sample time"},
        )
    if cfg.n_calibration:
        ds["calib_target"] = (
            ("time", "axis"),
            calib_deg,
            {"units": "degree", "long_name": "calibration target"},
        )
    ds.attrs.update(
        {
            "title": f"gazeem simulated session {cfg.session}",
            "Conventions": "CF-1.8",
            "session": cfg.session,
            "bin_s": float(cfg.bin_s),
            "ppd": float(cfg.ppd),
            "stim_center_x_deg": float(cfg.stim_center_deg[0]),
            "stim_center_y_deg": float(cfg.stim_center_deg[1]),
            "lag_bins": 0,
            "rf_x_deg": float(rf_off[0] / cfg.ppd),
            "rf_y_deg": float(-rf_off[1] / cfg.ppd),
            "source": "gazeem.simulate",
            "history": f"simulated by gazeem {__version__}",
            "gazeem_version": __version__,
            "true_sigma_px": float(cfg.tracker_sigma_px),
            "true_offset_px": offset.tolist(),
            "true_gain": gain.ravel().tolist(),
            "simulation_config": repr(
                {**asdict(cfg), "images": None if cfg.images is None else cfg.images.shape}
            ),
        }
    )
    return ds
