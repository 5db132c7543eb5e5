"""Reading recordings from NWB 2.x (pynwb), and writing simulated sessions to NWB.

What is read:

- the eye trace: a ``SpatialSeries`` inside an ``EyeTracking`` container, in
  ``processing['behavior']`` or in ``acquisition`` (``eye_series`` in sessions.tsv picks
  one by name when there are several);
- spikes: the ``Units`` table's ``spike_times``;
- the stimulus: an ``ImageSeries`` or ``OpticalSeries`` in ``stimulus`` or
  ``acquisition`` with data ``(frames, rows, cols)`` (``stimulus_series`` picks one);
- calibration fixations (optional): an ``intervals['calibration']`` table with columns
  ``target_x_deg`` and ``target_y_deg``.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from pathlib import Path

import numpy as np

from gazeem.io.files import short_message
from gazeem.io.raw import (
    IngestError,
    RawSession,
    ScaledFrames,
    check_scaling,
    eye_to_degrees,
    integer_unit_ids,
)
from gazeem.memory import check_allocation


def _explain_read_error(err: Exception, path) -> IngestError:
    """One line for pynwb's read errors: the object at fault and why, not its builder dump."""
    text = " ".join(str(err).split())
    if type(err).__name__ == "ConstructError":
        where = re.match(r"^\(?(root/\S+)", text)
        why = re.search(r"due to: (.*?)['\"]?\)+\.?$", text)
        fld = where.group(1).removeprefix("root/") if where else "/"
        reason = why.group(1) if why else short_message(err)
        return IngestError(path, fld, f"pynwb cannot read this object: {reason}")
    return IngestError(
        path, "/", f"not a readable NWB file ({type(err).__name__}: {short_message(err)})."
    )


def _check_size(data, path, fld: str) -> None:
    """Refuse to read a dataset whose declared size would not fit in memory."""
    shape = tuple(getattr(data, "shape", ()))
    n = int(np.prod(shape)) if shape else 0
    check_allocation(
        8 * n,
        str(path),
        fld,
        f"reading {n:,} values of shape {shape}",
        "the file's declared size is implausible (corrupt?), or split the recording.",
    )


def _timestamps(series, n: int, path, fld: str) -> np.ndarray:
    if series.timestamps is not None:
        shape = tuple(getattr(series.timestamps, "shape", (n,)))
        if shape != (n,):
            raise IngestError(
                path, f"{fld}.timestamps", f"has shape {shape} for {n} samples of data."
            )
        _check_size(series.timestamps, path, f"{fld}.timestamps")
        t = np.asarray(series.timestamps[:], dtype=np.float64)
    elif series.rate is not None:
        t = float(series.starting_time or 0.0) + np.arange(n) / float(series.rate)
    else:
        raise IngestError(path, fld, "has neither timestamps nor a rate.")
    if t.shape != (n,):
        raise IngestError(path, f"{fld}.timestamps", f"has {t.shape[0]} entries for {n} samples.")
    return t


def _pick(cands: dict, wanted: str | None, path, what: str, where: str, option: str):
    if wanted:
        hits = {k: v for k, v in cands.items() if k == wanted or k.split("/")[-1] == wanted}
        if len(hits) != 1:
            raise IngestError(
                path,
                option,
                f"{wanted!r} matches {len(hits)} {what}s; the file has {sorted(cands)}.",
            )
        return next(iter(hits.items()))
    if not cands:
        raise IngestError(path, where, f"no {what} found.")
    if len(cands) > 1:
        raise IngestError(
            path,
            option,
            f"the file holds several {what}s {sorted(cands)}; name one as {option} in sessions.tsv.",
        )
    return next(iter(cands.items()))


def read_nwb(path, meta) -> RawSession:
    """Open ``path`` and read a :class:`RawSession` (frames stay on disk until used)."""
    from pynwb import NWBHDF5IO
    from pynwb.behavior import EyeTracking
    from pynwb.image import ImageSeries

    path = Path(path)
    if not path.exists():
        raise IngestError(path, "path", "no such file.")
    try:
        io = NWBHDF5IO(str(path), "r", load_namespaces=True)
        nwb = io.read()
    except Exception as err:  # h5py/hdmf raise many types for truncated or foreign files
        raise _explain_read_error(err, path) from None
    try:
        return _read(nwb, io, path, meta, EyeTracking, ImageSeries)
    except IngestError:
        io.close()
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        io.close()
        raise IngestError(
            path, "/", f"cannot read the file ({type(err).__name__}: {err})."
        ) from None


def _read(nwb, io, path, meta, EyeTracking, ImageSeries) -> RawSession:
    eyes = {}
    places = [
        (
            "processing/behavior",
            nwb.processing["behavior"].data_interfaces if "behavior" in nwb.processing else {},
        )
    ]
    places.append(("acquisition", nwb.acquisition))
    for where, container in places:
        for name, obj in container.items():
            if isinstance(obj, EyeTracking):
                for sname, s in obj.spatial_series.items():
                    eyes[f"{where}/{name}/{sname}"] = s
    ename, eye = _pick(
        eyes,
        meta.eye_series,
        path,
        "EyeTracking SpatialSeries",
        "processing/behavior",
        "eye_series",
    )
    shape = tuple(getattr(eye.data, "shape", ()))
    if len(shape) != 2 or shape[1] != 2:
        raise IngestError(
            path,
            f"{ename}.data",
            f"has shape {shape}; expected (samples, 2) for x and y"
            + (
                " (a third column, such as pupil size or z, is not accepted silently)."
                if len(shape) == 2 and shape[1] > 2
                else "."
            ),
        )
    _check_size(eye.data, path, f"{ename}.data")
    data = np.asarray(eye.data[:], dtype=np.float64)
    conversion = float(eye.conversion)
    offset = float(getattr(eye, "offset", 0.0) or 0.0)
    check_scaling(path, ename, conversion, offset)
    data = data * conversion + offset
    frame = getattr(eye, "reference_frame", None)
    eye_xy = eye_to_degrees(
        data, eye.unit, meta, path, f"{ename}.unit", stated=(f"{ename}.reference_frame", frame)
    )
    eye_t = _timestamps(eye, data.shape[0], path, ename)

    if nwb.units is None or len(nwb.units) == 0:
        raise IngestError(path, "units", "the file has zero units; nothing to fit.")
    unit_ids = integer_unit_ids(np.asarray(nwb.units.id[:]), path, "units/id")
    _check_size(nwb.units["spike_times"].target.data, path, "units/spike_times")
    spikes = [
        np.asarray(nwb.units["spike_times"][i], dtype=np.float64) for i in range(len(unit_ids))
    ]

    stims = {}
    for where, container in (("stimulus", nwb.stimulus), ("acquisition", nwb.acquisition)):
        for name, obj in container.items():
            if (
                isinstance(obj, ImageSeries)
                and obj.data is not None
                and getattr(obj.data, "ndim", 0) >= 3
            ):
                stims[f"{where}/{name}"] = obj
    sname, stim = _pick(
        stims, meta.stimulus_series, path, "ImageSeries", "stimulus", "stimulus_series"
    )
    if stim.data.ndim != 3:
        raise IngestError(
            path,
            f"{sname}.data",
            f"has shape {stim.data.shape}; expected (frames, rows, cols) luminance.",
        )
    frames = ScaledFrames(
        stim.data,
        float(stim.conversion),
        float(getattr(stim, "offset", 0.0) or 0.0),
        path=path,
        field=f"{sname}.data",
    )
    frame_t = _timestamps(stim, frames.shape[0], path, sname)

    truth = None
    if (
        "ground_truth" in nwb.processing
        and "true_gaze" in nwb.processing["ground_truth"].data_interfaces
    ):
        pos = nwb.processing["ground_truth"]["true_gaze"]
        ts = pos.spatial_series["true_gaze"]
        tdata = np.asarray(ts.data[:], dtype=np.float64)
        truth = (_timestamps(ts, tdata.shape[0], path, "processing/ground_truth/true_gaze"), tdata)
    calib = None
    if nwb.intervals is not None and "calibration" in nwb.intervals:
        tab = nwb.intervals["calibration"]
        for col in ("target_x_deg", "target_y_deg"):
            if col not in tab.colnames:
                raise IngestError(
                    path,
                    f"intervals/calibration/{col}",
                    "missing; calibration intervals need targets.",
                )
        calib = (
            np.asarray(tab["start_time"][:], float),
            np.asarray(tab["stop_time"][:], float),
            np.c_[
                np.asarray(tab["target_x_deg"][:], float), np.asarray(tab["target_y_deg"][:], float)
            ],
        )
    return RawSession(
        source=str(path),
        eye_t=eye_t,
        eye_xy=eye_xy,
        eye_valid=np.isfinite(eye_xy).all(axis=1),
        spike_times=spikes,
        unit_ids=unit_ids,
        frames=frames,
        frame_t=frame_t,
        calibration=calib,
        truth=truth,
        _close=io.close,
    )


def session_to_nwb(
    ds,
    path,
    *,
    eye_samples_per_bin: int = 1,
    seed: int = 0,
    eye_unit: str = "degrees",
    eye: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write a simulated session (:func:`gazeem.simulate.simulate_session`) as an NWB file.

    Spike times are drawn uniformly inside their bins (seeded), so binning at the same
    edges gives the counts back exactly; the eye trace is written ``eye_samples_per_bin``
    times per bin at the bin's value, so averaging within bins gives it back, unless
    ``eye = (t (N,) s, xy (N, 2))`` gives the tracker's samples themselves (a trace sampled
    at 1000 Hz, say; the true gaze is still written per bin).
    """
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import EyeTracking, SpatialSeries
    from pynwb.file import Subject
    from pynwb.image import ImageSeries

    from gazeem import __version__
    from gazeem.io.raw_from_session import raw_arrays

    arr = raw_arrays(ds, eye_samples_per_bin=eye_samples_per_bin, seed=seed)
    true_t = arr["true_t"]
    if eye is not None:
        arr["eye_t"], arr["eye_xy"] = np.asarray(eye[0]), np.asarray(eye[1])
    nwb = NWBFile(
        session_description=f"gazeem simulated session {ds.attrs.get('session', '')}",
        identifier=str(uuid.UUID(int=np.random.default_rng(seed).integers(2**63) << 64 | 1)),
        session_start_time=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC),
        session_id=str(ds.attrs.get("session", "")),
        experiment_description="Simulated with known ground truth by gazeem.simulate.",
        source_script=f"gazeem {__version__}",
        source_script_file_name="gazeem/io/nwb.py",
        institution="gazeem",
        lab="gazeem",
        experimenter=["gazeem simulator"],
        subject=Subject(
            subject_id="sim", species="Macaca mulatta", sex="U", age="P5Y", description="simulated"
        ),
        keywords=["eye tracking", "receptive fields", "simulation"],
    )
    eye = SpatialSeries(
        name="gaze",
        data=H5DataIO(arr["eye_xy"], compression="gzip"),
        timestamps=H5DataIO(arr["eye_t"], compression="gzip"),
        reference_frame="screen centre; x right, y up",
        unit=eye_unit,
        description="eye tracker gaze (NaN during blinks)",
    )
    beh = nwb.create_processing_module("behavior", "eye tracking")
    beh.add(EyeTracking(spatial_series=eye))
    nwb.add_unit_column("sim_rate_hz", "mean firing rate in the simulation (Hz)")
    for uid, st in zip(arr["unit_ids"], arr["spike_times"], strict=True):
        nwb.add_unit(spike_times=st, id=int(uid), sim_rate_hz=float(len(st) / arr["duration"]))
    frames = arr["frames"]
    stim = ImageSeries(
        name="noise",
        data=H5DataIO(frames, compression="gzip", chunks=(min(64, len(frames)), *frames.shape[1:])),
        timestamps=arr["frame_t"],
        unit="contrast",
        format="raw",
        description="white-noise frames (rows, cols), contrast: 0 = mean luminance",
    )
    nwb.add_stimulus(stim)
    if "true_gaze" in ds:
        from pynwb.behavior import Position

        truth = nwb.create_processing_module(
            "ground_truth", "the simulator's truth (not a recording)"
        )
        truth.add(
            Position(
                name="true_gaze",
                spatial_series=SpatialSeries(
                    name="true_gaze",
                    data=H5DataIO(arr["true_xy"], compression="gzip"),
                    timestamps=H5DataIO(true_t, compression="gzip"),
                    reference_frame="screen centre; x right, y up",
                    unit="degrees",
                    description="true gaze of the simulated animal",
                ),
            )
        )
    if arr["calibration"] is not None:
        start, stop, target = arr["calibration"]
        nwb.add_time_intervals(_calibration_table(start, stop, target))
    from gazeem.io.files import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp, NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwb)
    return path


def _calibration_table(start, stop, target):
    from pynwb.epoch import TimeIntervals

    tab = TimeIntervals(name="calibration", description="fixations on known calibration targets")
    tab.add_column("target_x_deg", "target x, screen degrees (right)")
    tab.add_column("target_y_deg", "target y, screen degrees (up)")
    for a, b, (x, y) in zip(start, stop, target, strict=True):
        tab.add_row(
            start_time=float(a), stop_time=float(b), target_x_deg=float(x), target_y_deg=float(y)
        )
    return tab
