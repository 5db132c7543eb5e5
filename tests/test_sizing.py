"""A fit job's memory and time request (``gazeem.sizing``, ``gazeem resources``, issue 19)."""

import inspect
import json

import pytest

from gazeem.cli import main
from gazeem.errors import GazeemError
from gazeem.gaze.estimator import GazeEM
from gazeem.sizing import (
    DEFAULTS,
    MARGIN,
    SECONDS_PER_ITERATION,
    SessionSize,
    fit_resources,
)
from tests.conftest import make_session

#: docs/performance.md section 5: minutes recorded → peak RSS of `gazeem fit` (MB), on
#: 100 units, 64×64 px noise read lazily (frames_in_memory: false), 16 px patches
MEASURED_PEAK_MB = {7.5: 947, 15: 974, 30: 1301, 60: 1932}


def test_defaults_are_gazeems():
    params = inspect.signature(GazeEM.__init__).parameters
    assert {k: params[k].default for k in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize("minutes", sorted(MEASURED_PEAK_MB))
def test_request_covers_what_was_measured(minutes):
    size = SessionSize(minutes=minutes, units=100, stimulus_bytes=10**9)
    settings = {"frames_in_memory": False, "max_iter": 1}
    need = fit_resources(size, settings)
    # memory: the estimate before the margin is at or above the measured peak, by at most 15%
    estimate = need.mem_mb / MARGIN
    assert MEASURED_PEAK_MB[minutes] <= estimate <= 1.15 * MEASURED_PEAK_MB[minutes]
    # time: the measured iteration, twice (max_iter 1 plus the raw-trace fit and final
    # E-step), plus start-up, with the margin
    per_iter_s = dict(SECONDS_PER_ITERATION)[minutes] * minutes
    assert need.runtime == pytest.approx(MARGIN * (2 * per_iter_s / 60 + 5), abs=1)


def test_request_grows_with_length_units_and_retries():
    base = fit_resources(SessionSize(60, 100, 0))
    assert fit_resources(SessionSize(120, 100, 0)).runtime > 2 * base.runtime
    assert fit_resources(SessionSize(60, 200, 0)).runtime == pytest.approx(2 * base.runtime, 0.01)
    again = fit_resources(SessionSize(60, 100, 0), attempt=2)
    assert (again.mem_mb, again.runtime) == pytest.approx((2 * base.mem_mb, 2 * base.runtime), 0.01)
    # a stimulus held in memory is counted, one that is read lazily is not
    held = fit_resources(SessionSize(60, 100, 500 * 2**20))
    lazy = fit_resources(SessionSize(60, 100, 500 * 2**20), {"frames_in_memory": False})
    assert held.mem_mb - lazy.mem_mb == pytest.approx(MARGIN * 500, abs=2)


def test_annealing_adds_its_tempered_steps():
    # photographs held over bins are annealed (anneal: auto): 16 more M-steps to pay for
    noise = fit_resources(SessionSize(60, 100, 0), {"max_iter": 30})
    photos = fit_resources(SessionSize(60, 100, 0, held_frames=True), {"max_iter": 30})
    assert photos.runtime - 5 * MARGIN == pytest.approx(
        (noise.runtime - 5 * MARGIN) * 47 / 31, 0.01
    )
    off = fit_resources(
        SessionSize(60, 100, 0, held_frames=True), {"max_iter": 30, "anneal": False}
    )
    assert off == noise


def test_cli_reads_the_session_file(tmp_path, capsys):
    sim = make_session("small", seed=0, n_bins=900)
    path = tmp_path / "s.nc"
    sim.to_netcdf(path, engine="h5netcdf")
    size = SessionSize.from_file(path)
    assert size.minutes == pytest.approx(900 * float(sim.attrs["bin_s"]) / 60)
    assert size.units == sim.sizes["unit"]
    assert size.stimulus_bytes == 4 * sim["stimulus"].size
    assert not size.held_frames  # noise: a frame per bin
    assert main(["resources", str(path), "--set", "max_iter=80", "--attempt", "2"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = fit_resources(size, {"max_iter": 80}, attempt=2)
    assert (got["mem_mb"], got["runtime"]) == (want.mem_mb, want.runtime)


def test_not_a_session_names_the_file(tmp_path):
    bad = tmp_path / "notes.nc"
    bad.write_text("not hdf5")
    with pytest.raises(GazeemError, match=r"notes\.nc"):
        SessionSize.from_file(bad)
