"""What one ``gazeem fit`` job needs: memory and wall time from the session's size.

A scheduler (SLURM through Snakemake, or any other) must be told a job's memory and time
before it starts. Both follow from the recording's length, the stimulus's size and the
fit's settings, by the measurements of ``docs/performance.md`` (section 5: noise at
60 Hz, 64×64 px frames, 100 units, 16 px patches, ``cache_mb: 1024``, 2 cores):

- memory: ``810 MB + 19 MB per recorded minute`` up to an hour, plus the stimulus when
  it is held in memory (float32). Of the 19 MB, 17 are the patch cache, which stops
  growing at ``cache_mb``, and 2 the per-bin arrays (spike counts: in proportion to the
  units);
- time: one EM iteration costs ``s_per_iter_per_minute(minutes)`` seconds per recorded
  minute (4.1 at 7.5 minutes, 4.6 at 15, 7.6 at 30, 10.2 at 60, linear between and
  beyond), scaled by ``units / 100 × (patch / 16)²`` where that is above 1 (the E-step's
  convolution is linear in both), and a fit runs at most ``max_iter`` iterations.

Both are asked for with a margin of 1.5, and doubled on each retry (``attempt``). This
module imports neither torch nor the fit, so that Snakemake can size a job cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gazeem.errors import GazeemError
from gazeem.gaze.anneal import temperatures

#: ``(minutes of recording, s per EM iteration per minute)``, docs/performance.md section 5
SECONDS_PER_ITERATION = ((7.5, 4.1), (15.0, 4.6), (30.0, 7.6), (60.0, 10.2))
BASE_MB = 810.0
CACHE_MB_PER_MINUTE = 17.0
ARRAYS_MB_PER_MINUTE = 2.0
MARGIN = 1.5
#: start-up, reading the session and writing the result, min
FIXED_MINUTES = 5.0
MIN_MEM_MB = 1000
MIN_RUNTIME_MIN = 10
#: the reference workload's units and patch side (the measurements above)
REFERENCE_UNITS = 100
REFERENCE_PATCH = 16
#: GazeEM's defaults for the settings that size a fit (tests/test_sizing.py checks them)
DEFAULTS = {
    "max_iter": 50,
    "patch_size": 16,
    "cache_mb": 1024,
    "frames_in_memory": "auto",
    "anneal": "auto",
}
#: ``frames_in_memory: auto`` holds a float32 stimulus in memory below this size
IN_MEMORY_LIMIT_BYTES = 2**30


@dataclass(frozen=True)
class FitResources:
    """A fit job's request: ``mem_mb`` (MB) and ``runtime`` (minutes)."""

    mem_mb: int
    runtime: int


#: what a fit asks for before its session exists to be measured (a workflow's DAG is
#: built before ingest runs; Snakemake sizes the job again when it is scheduled)
UNSIZED = FitResources(mem_mb=8000, runtime=240)


@dataclass(frozen=True)
class SessionSize:
    """What sizes a fit: ``minutes`` recorded, ``units``, the stimulus's float32 bytes, and
    whether frames are held over bins (fewer than half as many frames as bins:
    photographs, which ``anneal: auto`` anneals)."""

    minutes: float
    units: int
    stimulus_bytes: int
    held_frames: bool = False

    @classmethod
    def from_file(cls, path: str | Path) -> SessionSize:
        """Read the sizes from an ingested session file's header (no data is loaded)."""
        import h5py

        try:
            with h5py.File(path, "r") as f:
                n_bins = f["counts"].shape[0]
                units = f["counts"].shape[1]
                bin_s = float(np.asarray(f.attrs["bin_s"]).reshape(-1)[0])
                stimulus = int(np.prod(f["stimulus"].shape)) * 4
                held = f["stimulus"].shape[0] <= 0.5 * n_bins
        except (OSError, KeyError, IndexError, ValueError) as err:
            raise GazeemError(
                f"{path}: field 'counts', 'stimulus' or 'bin_s': not an ingested session "
                f"({err}); run `gazeem ingest` first"
            ) from None
        return cls(n_bins * bin_s / 60.0, units, stimulus, held_frames=held)


def seconds_per_iteration_per_minute(minutes: float) -> float:
    """Measured EM iteration time per recorded minute, s, interpolated (flat below 7.5
    minutes, extended linearly beyond an hour: the patch cache overflows there)."""
    xs, ys = zip(*SECONDS_PER_ITERATION, strict=True)
    if minutes <= xs[-1]:
        return float(np.interp(minutes, xs, ys))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return ys[-1] + slope * (minutes - xs[-1])


def fit_resources(
    size: SessionSize, settings: dict | None = None, attempt: int = 1
) -> FitResources:
    """The memory and time to ask for, for one session's fit with ``settings`` (the
    config's ``fit`` section; missing keys take GazeEM's defaults)."""
    s = {**DEFAULTS, **(settings or {})}
    in_memory = s["frames_in_memory"]
    if in_memory == "auto":
        in_memory = size.stimulus_bytes < IN_MEMORY_LIMIT_BYTES
    units = max(1.0, size.units / REFERENCE_UNITS)
    cache = min(CACHE_MB_PER_MINUTE * size.minutes, max(float(s["cache_mb"]), 0.0))
    arrays = ARRAYS_MB_PER_MINUTE * units * size.minutes
    mem = BASE_MB + cache + arrays + (size.stimulus_bytes / 2**20 if in_memory else 0.0)
    work = max(1.0, size.units / REFERENCE_UNITS * (s["patch_size"] / REFERENCE_PATCH) ** 2)
    per_iter_s = seconds_per_iteration_per_minute(size.minutes) * size.minutes * work
    # the raw-trace fit and the final E-step cost about one iteration between them, and
    # annealing adds its tempered steps (gazeem.gaze.anneal)
    anneal = s["anneal"] is True or (s["anneal"] == "auto" and size.held_frames)
    iterations = int(s["max_iter"]) + 1 + (len(temperatures()) if anneal else 0)
    minutes = iterations * per_iter_s / 60.0 + FIXED_MINUTES
    scale = MARGIN * 2 ** (max(int(attempt), 1) - 1)
    return FitResources(
        mem_mb=max(MIN_MEM_MB, math.ceil(scale * mem)),
        runtime=max(MIN_RUNTIME_MIN, math.ceil(scale * minutes)),
    )
