"""What one ``gazeem fit`` job needs: memory and wall time from the session's size.

A scheduler (SLURM through Snakemake, or any other) must be told a job's memory and time
before it starts. Both follow from the recording's length, the stimulus's size and the
fit's settings, by the whole fits of ``docs/performance.md`` ("Whole fits against the
recording's duration": noise at 60 Hz, 64×64 px frames, 100 units, 16 px patches,
``gazeem fit`` at its defaults, ``cache_mb: 1024``, 2 cores):

- memory: ``810 MB`` of start-up, plus ``20 MB per recorded minute`` of per-bin arrays
  (per 100 units), plus the patch cache (``17 MB per minute``, which stops growing at
  ``cache_mb``; all of ``cache_mb`` for photographs held over bins, whose broad
  posteriors fill it), plus the stimulus where it is held (float32 when it takes under
  1 GiB, and one-byte codes for a stimulus of at most 256 values, made from that array
  or read a piece at a time), plus, for the per-bin chain, its two caches (emissions
  and forward messages, ``125 MB per minute``, each kept only while it fits
  ``cache_mb``) and ``3 MB per minute`` of its per-bin records;
- time: ``15 s`` per recorded minute for what a fit does once (the raw-trace fit, the
  held-out check, the cross-fitted scoring) and ``4.2 s`` per recorded minute for each
  EM iteration or tempered step (the costliest measured; both linear in length once the
  held-out check's agreement is sampled), scaled by ``units / 100 × (patch / 16)²``
  where that is above 1 (the E-step's convolution is linear in both); a fit runs at most
  ``max_iter`` iterations, plus one, plus the tempered steps where it anneals.

``latent: auto`` is given the larger memory of the two latents (which one a session gets is
decided on its data). Both are asked for with a margin of 1.5, and doubled on each retry
(``attempt``). This module imports neither torch nor the fit, so that Snakemake can size
a job cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gazeem.errors import GazeemError
from gazeem.gaze.anneal import temperatures

#: s per recorded minute, 100 units, 16 px patches, 2 cores (docs/performance.md, "Where
#: the growth was"): what a fit does once (the raw-trace fit, the held-out check, the
#: cross-fitted scoring, reading the session), and each EM iteration or tempered step
#: (the costliest measured, the first M-step's, 3.6-4.1 s; the chain's 2.5-2.7 s)
FIXED_S_PER_MINUTE = 15.0
ITERATION_S_PER_MINUTE = 4.2
BASE_MB = 810.0
CACHE_MB_PER_MINUTE = 17.0
ARRAYS_MB_PER_MINUTE = 20.0
#: the per-bin chain's records (kept cells and weights, intervals), MB per minute
CHAIN_MB_PER_MINUTE = 3.0
#: the chain's two caches (emissions and forward messages), MB per minute, each kept
#: only while it fits ``cache_mb``: at most ``CHAIN_CACHES × cache_mb``
CHAIN_CACHE_MB_PER_MINUTE = 125.0
CHAIN_CACHES = 2
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
    "latent": "auto",
}
#: ``frames_in_memory: auto`` holds a float32 stimulus in memory below this size
IN_MEMORY_LIMIT_BYTES = 2**30
#: as ``gazeem.gaze.patches`` (which imports torch; tests/test_sizing.py checks they agree):
#: a stimulus of at most N_CODES values, counted on its first N_SAMPLED, and of at most
#: CODED_MAX_VALUES values in all is held as one-byte codes
N_CODES = 256
N_SAMPLED = 2**16
CODED_MAX_VALUES = 2**30


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
    """What sizes a fit: ``minutes`` recorded, ``units``, the stimulus's float32 bytes,
    whether frames are held over bins (fewer than half as many frames as bins:
    photographs, which ``anneal: auto`` anneals), and whether the stimulus takes at most
    256 values (then a fit holds it as one-byte codes, ``gazeem.gaze.patches``)."""

    minutes: float
    units: int
    stimulus_bytes: int
    held_frames: bool = False
    coded: bool = False

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
                coded = _few_values(f["stimulus"])
        except (OSError, KeyError, IndexError, ValueError) as err:
            raise GazeemError(
                f"{path}: field 'counts', 'stimulus' or 'bin_s': not an ingested session "
                f"({err}); run `gazeem ingest` first"
            ) from None
        return cls(n_bins * bin_s / 60.0, units, stimulus, held_frames=held, coded=coded)


def _few_values(stimulus) -> bool:
    """Whether the first frames' values (as many as the fit samples first, 65,536) are at
    most 256 distinct values counting the background 0: what decides the fit's codes."""
    per_frame = max(1, int(np.prod(stimulus.shape[1:])))
    head = np.asarray(stimulus[: max(1, N_SAMPLED // per_frame)]).reshape(-1)[:N_SAMPLED]
    return bool(np.isfinite(head).all()) and np.union1d(head, [0.0]).size <= N_CODES


def held_stimulus_mb(size: SessionSize, frames_in_memory: bool | str) -> float:
    """MB of stimulus a fit holds (``gazeem.gaze.data.GazeData.from_dataset``): float32
    when loaded (``auto``: under 1 GiB), and one-byte codes of a few-valued stimulus of
    at most 2³⁰ values (made from the loaded array, or read a piece at a time when it is
    not loaded)."""
    if frames_in_memory is False:
        return 0.0
    values = size.stimulus_bytes // 4
    codes = values / 2**20 if size.coded and values <= CODED_MAX_VALUES else 0.0
    if frames_in_memory is True or size.stimulus_bytes < IN_MEMORY_LIMIT_BYTES:
        return size.stimulus_bytes / 2**20 + codes  # the loaded array stays with the session
    return codes


def fit_resources(
    size: SessionSize, settings: dict | None = None, attempt: int = 1
) -> FitResources:
    """The memory and time to ask for, for one session's fit with ``settings`` (the
    config's ``fit`` section; missing keys take GazeEM's defaults)."""
    s = {**DEFAULTS, **(settings or {})}
    latents = ("fixation", "bin") if s["latent"] == "auto" else (s["latent"],)
    if s.get("prior") == "hmm":  # deprecated spelling of latent: bin
        latents = ("bin",)
    units = max(1.0, size.units / REFERENCE_UNITS)
    cache_mb = max(float(s["cache_mb"]), 0.0)
    # broad posteriors (held photographs: weak evidence) keep tens of cells a bin and fill
    # the cache at any length; noise keeps about 3
    cache = cache_mb if size.held_frames else min(CACHE_MB_PER_MINUTE * size.minutes, cache_mb)
    arrays = ARRAYS_MB_PER_MINUTE * units * size.minutes
    mem = BASE_MB + cache + arrays + held_stimulus_mb(size, s["frames_in_memory"])
    if "bin" in latents:
        chain = min(CHAIN_CACHE_MB_PER_MINUTE * size.minutes, CHAIN_CACHES * cache_mb)
        mem += chain + CHAIN_MB_PER_MINUTE * size.minutes
    work = max(1.0, size.units / REFERENCE_UNITS * (s["patch_size"] / REFERENCE_PATCH) ** 2)
    # the final E-step costs about one iteration, and annealing adds its tempered steps
    anneal = s["anneal"] is True or (s["anneal"] == "auto" and size.held_frames)
    iterations = int(s["max_iter"]) + 1 + (len(temperatures()) if anneal else 0)
    per_minute_s = (FIXED_S_PER_MINUTE + iterations * ITERATION_S_PER_MINUTE) * work
    minutes = per_minute_s * size.minutes / 60.0 + FIXED_MINUTES
    scale = MARGIN * 2 ** (max(int(attempt), 1) - 1)
    return FitResources(
        mem_mb=max(MIN_MEM_MB, math.ceil(scale * mem)),
        runtime=max(MIN_RUNTIME_MIN, math.ceil(scale * minutes)),
    )
