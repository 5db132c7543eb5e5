"""Ingest of an hour-long session: peak resident memory and time against session length.

A synthetic NWB file is written by streaming (hdmf's DataChunkIterator), so that the
writer never holds the session either: 60 Hz frames of 64×64 px (uint8 binary noise),
100 units at ~20 Hz, a 500 Hz eye trace with fixations and saccades. Each ingest runs
in a fresh child process, whose peak RSS is read from ``getrusage(RUSAGE_CHILDREN)``.

Run: ``.venv/bin/python -m benchmarks.ingest_scale [minutes ...]``
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAME_HZ, EYE_HZ, N_UNITS, SIDE = 60.0, 500.0, 100, 64


def write_long_nwb(path: Path, minutes: float, seed: int = 0) -> None:
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from hdmf.data_utils import DataChunkIterator
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import EyeTracking, SpatialSeries
    from pynwb.image import ImageSeries

    rng = np.random.default_rng(seed)
    n_frames = int(minutes * 60 * FRAME_HZ)
    dur = n_frames / FRAME_HZ
    n_eye = int(dur * EYE_HZ)
    t_eye = (np.arange(n_eye) + 0.5) / EYE_HZ
    # fixations of ~300 ms at random places within ±1 deg, jumps between them
    n_fix = int(dur / 0.3) + 1
    pos = rng.uniform(-1, 1, size=(n_fix, 2))
    eye = pos[np.minimum((t_eye / 0.3).astype(int), n_fix - 1)] + rng.normal(
        0, 0.01, size=(n_eye, 2)
    )

    def frames():
        block = 1024
        for a in range(0, n_frames, block):
            yield from (
                rng.integers(0, 2, size=(min(block, n_frames - a), SIDE, SIDE), dtype=np.uint8)
                * 255
            )

    nwb = NWBFile(
        session_description="synthetic 1-hour session for the ingest benchmark",
        identifier="gazeem-bench",
        session_start_time=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC),
    )
    beh = nwb.create_processing_module("behavior", "eye")
    beh.add(
        EyeTracking(
            spatial_series=SpatialSeries(
                name="gaze", data=eye, timestamps=t_eye, reference_frame="screen", unit="degrees"
            )
        )
    )
    for _ in range(N_UNITS):
        nwb.add_unit(spike_times=np.sort(rng.uniform(0, dur, size=rng.poisson(20 * dur))))
    it = DataChunkIterator(
        data=frames(), maxshape=(n_frames, SIDE, SIDE), dtype=np.dtype("uint8"), buffer_size=1024
    )
    nwb.add_stimulus(
        ImageSeries(
            name="noise",
            data=H5DataIO(it, compression="gzip", chunks=(256, SIDE, SIDE)),
            rate=FRAME_HZ,
            starting_time=0.0,
            unit="n/a",
            format="raw",
        )
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


CHILD = """
import json, resource, sys, time
from gazeem.ingest import IngestSettings, ingest_session
from gazeem.io.sessions import SessionMeta
t = time.perf_counter()
meta = SessionMeta(session="long", path=sys.argv[1], format="nwb", ppd=32.0)
ingest_session(meta, sys.argv[2], IngestSettings(gaze_margin_deg=2.0))
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": peak_mb}))
"""


def measure(minutes: float, workdir: Path) -> dict:
    src = workdir / f"long_{minutes:g}min.nwb"
    out = workdir / f"long_{minutes:g}min.nc"
    t = time.perf_counter()
    write_long_nwb(src, minutes)
    write_s = time.perf_counter() - t
    res = json.loads(
        subprocess.run(
            [sys.executable, "-c", CHILD, str(src), str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    n_frames = int(minutes * 60 * FRAME_HZ)
    res.update(
        minutes=minutes,
        frames=n_frames,
        output_float32_mb=n_frames * SIDE * SIDE * 4 / 2**20,
        source_mb=src.stat().st_size / 2**20,
        output_mb=out.stat().st_size / 2**20,
        write_s=write_s,
    )
    src.unlink()
    out.unlink()
    return res


def main(argv: list[str]) -> list[dict]:
    minutes = [float(a) for a in argv] or [7.5, 15, 30, 60]
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as d:
        for m in minutes:
            rows.append(measure(m, Path(d)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
