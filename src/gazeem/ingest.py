"""The ingest stage: a source file (NWB or plain HDF5) to a validated session dataset.

``ingest_session`` reads the raw streams, checks the clocks and units, bins spikes and
eye samples, detects saccades and fixations, applies the response lag, and writes
``results/sessions/{session}.nc``. The stimulus frames are copied a chunk at a time,
so memory holds at most the small per-bin arrays plus one chunk of frames.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import h5netcdf
import numpy as np
import xarray as xr

from gazeem import __version__
from gazeem.coords import StimulusGeometry
from gazeem.errors import SessionValidationError
from gazeem.io.dataset import validate_session
from gazeem.io.files import atomic_output
from gazeem.io.raw import IngestError, RawSession
from gazeem.io.sessions import SessionMeta
from gazeem.memory import check_allocation
from gazeem.preprocess import (
    bin_eye,
    bin_spikes,
    calibration_targets,
    detect_fixations,
    frame_bin_edges,
    frame_index,
)
from gazeem.saccades import (
    MIN_RATE_HZ,
    Saccades,
    detect_saccades,
    effective_rate,
    saccade_bins,
    sampling_rate,
)

log = logging.getLogger("gazeem.ingest")

#: largest |contrast| accepted; fields are fitted to contrast of order 1, and a stimulus
#: scaled by 1e38 (a wrong conversion) drives every penalised field to exactly zero
MAX_CONTRAST = 1e3
#: fastest eye trackers sample at 2 kHz and displays refresh at 500 Hz at most; far faster
#: sampling means timestamps in the wrong unit (ms labelled s, or s labelled ms)
MAX_EYE_RATE_HZ = 20_000.0
MAX_FRAME_RATE_HZ = 5_000.0


@dataclass(frozen=True)
class IngestSettings:
    """Preprocessing settings shared by all sessions (``ingest:`` in config.yaml).

    Attributes
    ----------
    saccade_detector
        ``samples``: saccades and microsaccades found in the raw eye samples
        (:mod:`gazeem.saccades`, Engbert & Kliegl 2003); ``bins``: the velocity rule on the
        bin-averaged trace; ``auto``: ``samples`` where the tracker samples at 300 Hz or
        faster, else ``bins``.
    saccade_lambda, min_saccade_s
        The sample detector's threshold in median-estimated velocity SDs, and the shortest
        saccade it keeps, s.
    saccade_velocity_deg_s
        Saccade threshold on the bin-averaged eye trace, degrees/s (``bins``).
    slow_saccade_bins
        ``bins``: also a movement of the trace over this many bins, however slow its
        steps, larger than ``saccade_lambda`` median-estimated SDs of such
        displacements (:func:`gazeem.preprocess.slow_movements`); 0 or 1: not used.
    min_saccade_bins, min_fixation_bins
        Shortest saccade and shortest fixation kept, bins.
    max_eye_gap_s
        Longest gap between eye samples accepted; a longer one is an error (a shorter one
        makes its bins invalid).
    min_valid_fraction
        Fraction of a bin's eye samples that must be valid for the bin to be valid.
    gaze_margin_deg, max_outside_fraction
        If more than ``max_outside_fraction`` of valid bins put the gaze farther than
        ``gaze_margin_deg`` outside the stimulus, ingest stops: the ppd or the stimulus
        placement is probably wrong.
    spike_tolerance_s
        Spikes more than this outside the recording are an error (mismatched clocks).
    frames_per_chunk, compression
        Frames copied per chunk, and the gzip level of the output.
    """

    saccade_detector: str = "auto"
    saccade_lambda: float = 6.0
    min_saccade_s: float = 0.006
    saccade_velocity_deg_s: float = 5.0
    slow_saccade_bins: int = 3
    min_saccade_bins: int = 1
    min_fixation_bins: int = 3
    max_eye_gap_s: float = 0.25
    min_valid_fraction: float = 0.5
    gaze_margin_deg: float = 0.5
    max_outside_fraction: float = 0.5
    spike_tolerance_s: float = 1.0
    frames_per_chunk: int = 256
    compression: int = 4


def open_source(meta: SessionMeta, base: Path | None = None) -> RawSession:
    """Open the session's source file with the reader for its format."""
    from gazeem.io.hdf5 import read_hdf5
    from gazeem.io.nwb import read_nwb

    path = Path(meta.path)
    if base is not None and not path.is_absolute():
        path = base / path
    return {"nwb": read_nwb, "hdf5": read_hdf5}[meta.format](path, meta)


def _check_clock(t: np.ndarray, path, fld: str) -> None:
    d = np.diff(t)
    if not np.all(np.isfinite(t)):
        raise IngestError(path, fld, "holds NaN or inf timestamps.")
    bad = np.flatnonzero(d <= 0)
    if bad.size:
        i = int(bad[0])
        kind = "duplicate" if d[i] == 0 else "unsorted"
        raise IngestError(
            path,
            fld,
            f"{kind} timestamps at index {i + 1} ({t[i]:.6f} s then {t[i + 1]:.6f} s); they must increase strictly.",
        )


def _check_rate(period: float, max_hz: float, path, fld: str, what: str) -> None:
    """A sampling period that implies an impossible rate means timestamps in wrong units."""
    if period > 0 and 1.0 / period > max_hz:
        raise IngestError(
            path,
            fld,
            f"the {what} are {period:.3g} s apart ({1.0 / period:,.0f} per second, more than "
            f"{max_hz:,.0f}); are the timestamps in the units the file states (seconds in NWB, "
            "the units attribute in plain HDF5)? Milliseconds labelled as seconds, or seconds "
            "labelled as milliseconds, look like this.",
        )


def bin_session(raw: RawSession, meta: SessionMeta, settings: IngestSettings) -> dict:
    """Check a raw recording and bin it; returns the per-bin arrays and the frame range."""
    path = raw.source
    _check_clock(raw.eye_t, path, "eye timestamps")
    _check_clock(raw.frame_t, path, "stimulus timestamps")
    gaps = np.diff(raw.eye_t)
    if gaps.size and gaps.max() > settings.max_eye_gap_s:
        i = int(np.argmax(gaps))
        raise IngestError(
            path,
            "eye timestamps",
            f"gap of {gaps[i]:.3f} s in the eye clock at {raw.eye_t[i]:.3f} s (max_eye_gap_s is "
            f"{settings.max_eye_gap_s}); lost samples should be NaN rows, not missing timestamps.",
        )
    eye_dt = float(np.median(gaps)) if gaps.size else 0.0
    _check_rate(eye_dt, MAX_EYE_RATE_HZ, path, "eye timestamps", "eye samples")
    if meta.bin_s is not None and meta.bin_s < eye_dt:
        raise IngestError(
            path,
            "bin_s",
            f"bins of {meta.bin_s:g} s are shorter than the eye tracker's sample period "
            f"({eye_dt:.3g} s), so most bins would hold no eye sample; choose bin_s >= "
            f"{eye_dt:.3g} s in sessions.tsv (one stimulus frame per bin is usual).",
        )
    # each sample stands for the interval of half a sample period on either side
    eye_span = (raw.eye_t[0] - eye_dt / 2, raw.eye_t[-1] + eye_dt / 2)
    if len(raw.frame_t) > 1:
        period = float(np.median(np.diff(raw.frame_t)))
        _check_rate(period, MAX_FRAME_RATE_HZ, path, "stimulus timestamps", "frames")
    elif meta.bin_s is None:
        raise IngestError(
            path,
            "bin_s",
            "the stimulus has a single frame, so bins cannot follow the frames; set bin_s in "
            "sessions.tsv (the frame is then taken to stay on until the eye trace ends).",
        )
    else:  # one static frame: shown until the recording ends
        period = max(eye_span[1] - raw.frame_t[0], 0.0)
    stim_span = (raw.frame_t[0], raw.frame_t[-1] + period)
    t0, t1 = max(eye_span[0], stim_span[0]), min(eye_span[1], stim_span[1])
    if t1 <= t0:
        raise IngestError(
            path,
            "stimulus timestamps",
            f"the stimulus clock ({stim_span[0]:.3f}–{stim_span[1]:.3f} s) and the eye clock "
            f"({eye_span[0]:.3f}–{eye_span[1]:.3f} s) do not overlap.",
        )
    rec0, rec1 = min(eye_span[0], stim_span[0]), max(eye_span[1], stim_span[1])
    tol = settings.spike_tolerance_s
    for uid, st in zip(raw.unit_ids, raw.spike_times, strict=True):
        if not np.all(np.isfinite(st)):
            raise IngestError(
                path,
                f"units/spike_times (unit {uid})",
                f"{int(np.sum(~np.isfinite(st)))} spike times are NaN or inf.",
            )
        if st.size and (st.min() < rec0 - tol or st.max() > rec1 + tol):
            raise IngestError(
                path,
                f"units/spike_times (unit {uid})",
                f"spikes from {st.min():.3f} to {st.max():.3f} s lie outside the recording "
                f"({rec0:.3f}–{rec1:.3f} s); the spike clock may not match the eye and stimulus clocks.",
            )
    n_bins = (t1 - t0) / meta.bin_s if meta.bin_s else len(raw.frame_t)
    check_allocation(
        n_bins * (8 * len(raw.unit_ids) + 96),
        str(path),
        "bin_s",
        f"binning {t1 - t0:.1f} s into {n_bins:,.0f} bins of {len(raw.unit_ids)} units",
        "choose a longer bin_s in sessions.tsv (bins of one stimulus frame are usual).",
    )
    edges = frame_bin_edges(raw.frame_t, t0, t1, meta.bin_s)
    if len(edges) < 2:
        raise IngestError(path, "stimulus timestamps", "the recording is shorter than one bin.")
    bin_s = float(np.median(np.diff(edges)))
    counts = bin_spikes(raw.spike_times, edges)
    eye, valid = bin_eye(raw.eye_t, raw.eye_xy, raw.eye_valid, edges, settings.min_valid_fraction)
    if not valid.any():
        raise IngestError(path, "eye", "has no valid samples in the recording.")
    frames = frame_index(raw.frame_t, edges)

    # a wrong ppd, placement or receptive-field region shows as the fields' region (gaze
    # plus the region's offset) far outside the stimulus; the gaze itself may be anywhere
    rows, cols = raw.frames.shape[1:]
    geom = StimulusGeometry(
        meta.ppd, (meta.stim_center_x_deg, meta.stim_center_y_deg), (rows, cols)
    )
    half = geom.half_extent_deg
    region = eye[valid] + np.array([meta.rf_x_deg, meta.rf_y_deg])
    off = np.abs(region - np.array(geom.center_deg)) - half
    outside = np.mean(np.any(off > settings.gaze_margin_deg, axis=1))
    if outside > settings.max_outside_fraction:
        raise IngestError(
            path,
            "ppd",
            f"{outside:.0%} of valid gaze samples lie more than {settings.gaze_margin_deg} deg "
            "outside the stimulus once moved to their receptive-field region (gaze + "
            f"({meta.rf_x_deg}, {meta.rf_y_deg}) deg) ({cols}x{rows} px at ppd={meta.ppd} is "
            f"{2 * half[0]:.2f}x{2 * half[1]:.2f} deg, centred at ({meta.stim_center_x_deg}, "
            f"{meta.stim_center_y_deg}) deg); check ppd, the stimulus placement and rf_x_deg, "
            "rf_y_deg (where the fields are relative to the gaze).",
        )
    events = _sample_saccades(raw, settings, path)
    fixation = detect_fixations(
        eye,
        valid,
        bin_s,
        settings.saccade_velocity_deg_s,
        settings.min_saccade_bins,
        settings.min_fixation_bins,
        saccade=None if events is None else saccade_bins(events, edges),
        slow_window_bins=settings.slow_saccade_bins,
        slow_lambda=settings.saccade_lambda,
    )
    calib = calibration_targets(raw.calibration, edges)
    truth = None
    if raw.truth is not None:
        tt, txy = raw.truth
        truth, _ = bin_eye(tt, txy, np.isfinite(txy).all(axis=1), edges, 0.0)
    lag = int(meta.lag_bins)
    if lag:
        if lag >= len(counts):
            raise IngestError(path, "lag_bins", f"lag of {lag} bins is longer than the recording.")
        counts = counts[lag:]
        n = len(counts)
        eye, valid, fixation, frames, calib, edges = (
            eye[:n],
            valid[:n],
            fixation[:n],
            frames[:n],
            calib[:n],
            edges[: n + 1],
        )
        truth = None if truth is None else truth[:n]
    shown = frames[frames >= 0]
    f0, f1 = (int(shown.min()), int(shown.max()) + 1) if shown.size else (0, 0)
    return {
        "edges": edges,
        "bin_s": bin_s,
        "counts": counts,
        "eye": eye,
        "eye_valid": valid,
        "fixation": fixation,
        "frame": np.where(frames >= 0, frames - f0, -1),
        "calib": calib,
        "truth": truth,
        "frame_range": (f0, f1),
        "saccades": events,
    }


def _sample_saccades(raw: RawSession, settings: IngestSettings, path) -> Saccades | None:
    """Saccades in the raw eye samples, or ``None`` where the bin-velocity rule is used."""
    choice = settings.saccade_detector
    if choice not in ("auto", "samples", "bins"):
        raise IngestError(
            path, "ingest.saccade_detector", f"must be auto, samples or bins, got {choice!r}."
        )
    rate = effective_rate(raw.eye_t, raw.eye_xy, raw.eye_valid)
    if choice == "bins" or (choice == "auto" and rate < MIN_RATE_HZ):
        return None
    if rate < MIN_RATE_HZ:
        logged = sampling_rate(raw.eye_t)
        held = f" (logged at {logged:.0f} Hz, each value held)" if logged > 1.5 * rate else ""
        raise IngestError(
            path,
            "eye",
            f"takes new values at {rate:.0f} Hz{held}; the sample detector (saccade_detector: "
            f"samples) needs {MIN_RATE_HZ:.0f} Hz or more. Use saccade_detector: bins (or auto).",
        )
    return detect_saccades(
        raw.eye_t, raw.eye_xy, raw.eye_valid, settings.saccade_lambda, settings.min_saccade_s
    )


def _detector_attrs(events: Saccades | None, settings: IngestSettings) -> dict:
    if events is None:
        slow = settings.slow_saccade_bins
        rule = f"; over {slow} bins: lambda {settings.saccade_lambda:g}" if slow > 1 else ""
        return {"saccade_detector": f"bins ({settings.saccade_velocity_deg_s:g} deg/s{rule})"}
    return {
        "saccade_detector": (
            f"samples (Engbert & Kliegl 2003: lambda {settings.saccade_lambda:g}, "
            f"{1000 * settings.min_saccade_s:g} ms, {events.rate_hz:.0f} Hz)"
        ),
        "saccade_threshold_deg_s": np.asarray(events.threshold_deg_s),
        "n_saccades": len(events),
    }


def ingest_session(
    meta: SessionMeta, output, settings: IngestSettings | None = None, base: Path | None = None
) -> Path:
    """Ingest one session and write its dataset atomically to ``output``."""
    settings = settings or IngestSettings()
    output = Path(output)
    with open_source(meta, base) as raw:
        b = bin_session(raw, meta, settings)
        f0, f1 = b["frame_range"]
        ds = _small_dataset(raw, meta, settings, b)
        with atomic_output(output) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf", encoding=_encoding(ds, settings))
            _append_frames(tmp, raw, f0, f1, settings)
            with xr.open_dataset(tmp, engine="h5netcdf") as written:
                try:
                    validate_session(written)
                except SessionValidationError as err:  # name the source, not the temporary
                    raise SessionValidationError(
                        str(err).replace(str(tmp), str(raw.source))
                    ) from None
    log.info(
        "ingested %s: %d bins, %d units, %d frames -> %s",
        meta.session,
        len(b["counts"]),
        len(raw.unit_ids),
        f1 - f0,
        output,
    )
    return output


def _small_dataset(
    raw: RawSession, meta: SessionMeta, settings: IngestSettings, b: dict
) -> xr.Dataset:
    edges = b["edges"]
    time = (edges[:-1] + edges[1:]) / 2
    data = {
        "counts": (
            ("time", "unit"),
            b["counts"],
            {"units": "spikes/bin", "long_name": "spike count"},
        ),
        "eye": (
            ("time", "axis"),
            b["eye"],
            {"units": "degree", "long_name": "eye tracker gaze (x right, y up)"},
        ),
        "eye_valid": (("time",), b["eye_valid"], {"long_name": "tracker sample valid"}),
        "fixation": (
            ("time",),
            b["fixation"].astype(np.int32),
            {"long_name": "fixation id (-1: saccade or invalid)"},
        ),
        "frame": (
            ("time",),
            b["frame"].astype(np.int32),
            {"long_name": "stimulus frame index (-1: none)"},
        ),
    }
    if b["truth"] is not None:
        data["true_gaze"] = (
            ("time", "axis"),
            b["truth"],
            {"units": "degree", "long_name": "true gaze (simulation)"},
        )
    if raw.calibration is not None:
        data["calib_target"] = (
            ("time", "axis"),
            b["calib"],
            {"units": "degree", "long_name": "calibration target"},
        )
    f0, f1 = b["frame_range"]
    rows, cols = raw.frames.shape[1:]
    # declares the stimulus dimensions, so that the frames can be streamed in afterwards
    data["frame_time"] = (
        ("frame",),
        raw.frame_t[f0:f1],
        {"units": "s", "long_name": "frame onset time"},
    )
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    ds = xr.Dataset(
        data,
        coords={
            "time": ("time", time, {"units": "s", "long_name": "bin centre time"}),
            "unit": ("unit", np.asarray(raw.unit_ids)),
            "axis": ("axis", np.array(["x", "y"])),
            "row": (
                "row",
                np.arange(rows, dtype=np.int32),
                {"units": "pixel", "long_name": "stimulus row"},
            ),
            "col": (
                "col",
                np.arange(cols, dtype=np.int32),
                {"units": "pixel", "long_name": "stimulus column"},
            ),
        },
    )
    ds.attrs.update(
        {
            "title": f"gazeem session {meta.session}",
            "Conventions": "CF-1.8",
            "session": meta.session,
            "source": str(raw.source),
            "history": f"{now}: ingested by gazeem {__version__}",
            "gazeem_version": __version__,
            "bin_s": float(b["bin_s"]),
            "ppd": float(meta.ppd),
            "stim_center_x_deg": float(meta.stim_center_x_deg),
            "stim_center_y_deg": float(meta.stim_center_y_deg),
            "lag_bins": int(meta.lag_bins),
            "rf_x_deg": float(meta.rf_x_deg),
            "rf_y_deg": float(meta.rf_y_deg),
            "frame_offset": int(b["frame_range"][0]),
            "ingest_settings": repr(asdict(settings)),
            **_detector_attrs(b["saccades"], settings),
        }
    )
    return ds


def _encoding(ds: xr.Dataset, settings: IngestSettings) -> dict:
    n = ds.sizes["time"]
    chunk = min(n, 4096)  # a few seconds of bins per chunk
    enc = {}
    for name, var in ds.data_vars.items():
        chunks = tuple(
            min(s, chunk) if d == "time" else s for d, s in zip(var.dims, var.shape, strict=True)
        )
        enc[name] = {"zlib": True, "complevel": settings.compression, "chunksizes": chunks}
    return enc


def _append_frames(path, raw: RawSession, f0: int, f1: int, settings: IngestSettings) -> None:
    """Add ``stimulus (frame, row, col)`` to the file, copying a chunk of frames at a time."""
    frames = raw.frames
    rows, cols = frames.shape[1:]
    n = f1 - f0
    with h5netcdf.File(path, "a") as f:
        var = f.create_variable(
            "stimulus",
            ("frame", "row", "col"),
            dtype="float32",
            chunks=(max(1, min(n, 64)), rows, cols),
            compression="gzip",
            compression_opts=settings.compression,
        )
        var.attrs["units"] = "1"
        var.attrs["long_name"] = "stimulus contrast (0 = mean luminance)"
        step = int(settings.frames_per_chunk)
        lo, hi = np.inf, -np.inf
        for a in range(0, n, step):
            b = min(n, a + step)
            block = frames[f0 + a : f0 + b]
            if not np.all(np.isfinite(block)):
                bad = f0 + a + int(np.flatnonzero(~np.isfinite(block).all(axis=(1, 2)))[0])
                raise IngestError(
                    raw.source,
                    raw.frames_field,
                    f"frame {bad} holds NaN or inf (frames must be finite contrast values).",
                )
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
            if max(abs(lo), abs(hi)) > MAX_CONTRAST:
                raise IngestError(
                    raw.source,
                    raw.frames_field,
                    f"values reach {max(abs(lo), abs(hi)):.3g} after the conversion; gazeem "
                    f"expects contrast of order 1 (0 = mean luminance, at most ±{MAX_CONTRAST:g}). "
                    "Check the series' conversion/offset (NWB) or store contrast (HDF5).",
                )
            var[a:b] = block
    if n and lo == hi:
        raise IngestError(
            raw.source,
            raw.frames_field,
            f"every frame shown is the constant {lo:g}: there is no stimulus to fit fields to.",
        )
