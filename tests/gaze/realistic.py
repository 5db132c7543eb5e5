"""Sessions as a lab would hand them to gazeem, and the oracles to judge a fit by.

A simulated session is written to NWB with pynwb and ingested from that file with a
session-table row, so the fit sees what it would see on a lab's data (the ingest's own
fixation detection, the table's conventions). The oracles know the truth:

- :func:`oracle_tracker`: the tracker regressed on the *true* gaze (per-fixation means);
  no method can learn the tracker better than this from the same fixations;
- :func:`oracle_gaze`: an E-step with the true fields, biases and tracker parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from gazeem.coords import StimulusGeometry
from gazeem.gaze.data import GazeData
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.intervals import LEVELS
from gazeem.gaze.settings import ProblemSettings, WindowSettings
from gazeem.ingest import ingest_session
from gazeem.io.nwb import session_to_nwb
from gazeem.io.sessions import SessionMeta
from gazeem.models import PoissonLN, TrackerModel, UniformPrior
from tests.conftest import FIELDS

IDENTITY = ((1.0, 0.0), (0.0, 1.0))
#: issue 13's sessions: 2 minutes at 60 Hz, 48 units at 8-30 Hz, 20 px fields, identity
#: gain, a (5, -4) px calibration offset, 3 px tracker error per fixation
TWO_MINUTES = dict(
    n_bins=7200,
    n_units=48,
    patch_size=20,
    rate_hz=(8.0, 30.0),
    tracker_gain=IDENTITY,
    tracker_offset_px=(5.0, -4.0),
    tracker_sigma_px=3.0,
    ppd=20.0,
    **FIELDS,
)
#: fields 7.8 px from the reported gaze (6 right, 5 up), the gaze over ±45 px of a
#: 128 px stimulus, ~470 fixations of 8-20 bins
OFFSET_SESSION = dict(
    stim_rows=128,
    stim_cols=128,
    rf_offset_px=(6.0, -5.0),
    gaze_range_px=45.0,
    fixation_bins=(8, 20),
)

#: issue 13's free viewing of photographs: six of scikit-image's, each held 2 s, over the
#: offset session's geometry, the gaze over ±40 px of the 128 px stimulus; one minute
PHOTOGRAPH_SESSION = {
    **TWO_MINUTES,
    **OFFSET_SESSION,
    "n_bins": 3600,
    "stimulus": "images",
    "frame_hold": 120,
    "rf_zero_mean": True,
    "gaze_range_px": 40.0,
    "fixation_bins": (12, 30),
}


def through_nwb(sim: xr.Dataset, folder: Path, **row) -> xr.Dataset:
    """``sim`` written to NWB (4 eye samples a bin), then ingested with a table row."""
    nwb = session_to_nwb(sim, Path(folder) / "s.nwb", eye_samples_per_bin=4)
    meta = SessionMeta(
        session="s",
        path=str(nwb),
        format="nwb",
        ppd=float(sim.attrs["ppd"]),
        stim_center_x_deg=float(sim.attrs["stim_center_x_deg"]),
        stim_center_y_deg=float(sim.attrs["stim_center_y_deg"]),
        rf_x_deg=float(sim.attrs["rf_x_deg"]),
        rf_y_deg=float(sim.attrs["rf_y_deg"]),
        **row,
    )
    out = ingest_session(meta, Path(folder) / "s.nc")
    return xr.load_dataset(out, engine="h5netcdf")


def true_px(session: xr.Dataset) -> np.ndarray:
    """``(T, 2)`` true gaze, stimulus pixels."""
    return StimulusGeometry.from_dataset(session).deg_to_px(session["true_gaze"].values)


def rms(est: np.ndarray, truth: np.ndarray) -> float:
    """RMS distance (px) over bins where ``est`` is finite."""
    d = est - truth
    ok = np.isfinite(d).all(1)
    return float(np.sqrt((d[ok] ** 2).sum(1).mean()))


def oracle_tracker(session: xr.Dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """``(gain (2, 2), offset (2,), σ)`` regressed on the true gaze, centred px, y down.

    One observation per fixation (its mean true gaze and mean reading), as the model has.
    """
    geom = StimulusGeometry.from_dataset(session)
    c = np.asarray(geom.center_px)
    fix = session["fixation"].values
    z, r = true_px(session) - c, geom.deg_to_px(session["eye"].values) - c
    ids = np.unique(fix[fix >= 0])
    zf = np.array([z[fix == f].mean(0) for f in ids])
    rf = np.array([np.nanmean(r[fix == f], 0) for f in ids])
    x = np.c_[zf, np.ones(len(zf))]
    coef, *_ = np.linalg.lstsq(x, rf, rcond=None)
    sigma = float(np.sqrt(((rf - x @ coef) ** 2).sum() / (2 * len(zf))))
    return coef[:2].T, coef[2], sigma


def oracle_gaze(session: xr.Dataset, sim: xr.Dataset, patch_size: int) -> np.ndarray:
    """``(T, 2)`` posterior-mean gaze (stimulus px) of an E-step that knows the truth:
    the simulator's fields and biases, and its tracker σ, gain and offset."""
    data = GazeData.from_dataset(session, torch.device("cpu"), torch.float64)
    n_units = sim.sizes["unit"]
    resp = PoissonLN(n_units, patch_size, n_lags=sim.sizes["lag"]).double()
    with torch.no_grad():
        resp.rf.copy_(torch.as_tensor(sim["true_rf"].values))
        resp.bias.copy_(torch.as_tensor(sim["true_bias"].values))
    gain = torch.as_tensor(sim.attrs["true_gain"], dtype=torch.float64).reshape(2, 2)
    tracker = TrackerModel(
        sigma=float(sim.attrs["true_sigma_px"]),
        gain=gain,
        offset=torch.as_tensor(sim.attrs["true_offset_px"], dtype=torch.float64),
    )
    from gazeem.gaze.build import build_tracker

    grid, *_ = build_tracker(
        data,
        "oracle",
        grid_margin_px=0,
        sigma_init=3.0,
        learn_sigma=False,
        learn_gain=False,
        offset="zero",
    )
    settings = ProblemSettings(window=WindowSettings(k=4.0))
    prob = FixationProblem(data, grid, tracker, UniformPrior(grid.n_cells), resp, None, settings)
    return prob.e_step().posterior.per_bin(data, tracker)["mean"]


def coverage(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray, z: float) -> float:
    """Fraction of (bin, axis) pairs whose truth lies within ``mean ± z·sd``."""
    ok = np.isfinite(mean).all(1)
    return float((np.abs(mean[ok] - truth[ok]) <= z * sd[ok]).mean())


def interval_coverage(gaze: dict, truth: np.ndarray, level: float) -> float:
    """Fraction of (bin, axis) pairs whose truth lies in the reported central ``level``
    interval (``gaze_per_bin()``'s ``lower`` and ``upper``)."""
    i = int(np.argmin(np.abs(np.asarray(LEVELS) - level)))
    assert LEVELS[i] == level
    ok = np.isfinite(gaze["mean"]).all(1)
    lo, hi = gaze["lower"][ok, :, i], gaze["upper"][ok, :, i]
    return float(((lo <= truth[ok]) & (truth[ok] <= hi)).mean())


def sd_over_error(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray) -> float:
    """Median posterior SD over the per-axis RMS error (1 when the SD is honest)."""
    ok = np.isfinite(mean).all(1)
    return float(np.median(sd[ok]) / np.sqrt(((mean[ok] - truth[ok]) ** 2).mean()))
