"""Fixations that hid a saccade (:mod:`gazeem.gaze.split`): the Bayes factor against
enumeration, the relabelling, and a cut found on a simulated session."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, poisson

from gazeem.gaze.data import GazeData, GazeGrid
from gazeem.gaze.estimator import GazeEM
from gazeem.gaze.fixation import FixationProblem
from gazeem.gaze.settings import ProblemSettings, WindowSettings
from gazeem.gaze.split import MIN_BINS, split_data, split_evidence
from gazeem.models import CellWeightsPrior, PoissonLN, TrackerModel
from gazeem.simulate import simulate_session
from tests.conftest import TINY, make_session
from tests.gaze.realistic import rms, through_nwb, true_px
from tests.gaze.test_posterior import patch_by_loops


@pytest.fixture
def problem():
    ds = simulate_session(seed=4, **{**TINY, "n_bins": 60, "fixation_bins": (8, 12)})
    data = GazeData.from_dataset(ds, torch.device("cpu"), torch.float64)
    rng = np.random.default_rng(3)
    resp = PoissonLN(2, 4, 2).double()
    with torch.no_grad():
        resp.rf.copy_(torch.as_tensor(rng.normal(0, 0.6, size=(2, 2, 4, 4))))
        resp.bias.copy_(torch.tensor([-0.2, 0.1]))
    tracker = TrackerModel(sigma=1.3)
    tracker.offset = torch.tensor([0.4, -0.3], dtype=torch.float64)
    prior = CellWeightsPrior(torch.as_tensor(rng.uniform(0.2, 1.0, size=(12, 12))))
    settings = ProblemSettings(window=WindowSettings(k=3.0, h_min=2, h_max=2))
    prob = FixationProblem(data, GazeGrid(0, 11, 0, 11), tracker, prior, resp, None, settings)
    prob.e_step()
    return prob, ds


def test_bayes_factor_equals_enumeration(problem):
    """Every split point and cell by explicit loops: the evidence of two positions (each
    part with its own mean reading), averaged over the split, against one."""
    prob, ds = problem
    log_bf, at, jump = split_evidence(prob)
    stim, frame, counts = (
        ds["stimulus"].values.astype(float),
        ds["frame"].values,
        ds["counts"].values,
    )
    rf, bias = prob.response.rf.detach().numpy(), prob.response.bias.detach().numpy()
    logw = prob.cell_prior.log_weights.numpy()
    center = np.asarray(prob.data.geometry.center_px)
    eye = np.asarray(prob.data.eye_px) - center
    fix = prob.data.fixation.numpy()
    cells = prob.windows().cells.numpy()
    checked = 0
    for f in range(prob.data.n_fixations):
        bins = np.flatnonzero(fix == f)
        n = bins.size
        if n < 2 * MIN_BINS:
            assert log_bf[f] == -np.inf and at[f] == -1
            continue
        ll = np.zeros((n, len(cells[f])))
        for i, t in enumerate(bins):
            for k, (x, y) in enumerate(cells[f]):
                for u in range(2):
                    drive = bias[u] + sum(
                        (
                            rf[u, lag]
                            * patch_by_loops(stim, frame[t - lag] if t >= lag else -1, x, y, 4)
                        ).sum()
                        for lag in range(2)
                    )
                    ll[i, k] += poisson.logpmf(counts[t, u], np.exp(drive))

        def evidence(rows, bins=bins, f=f, ll=ll):
            """``(log evidence, most probable cell)`` of one position for ``rows``."""
            reading = eye[bins[rows]].mean(0)
            offset = prob.tracker.offset.numpy()
            track = np.array(
                [
                    multivariate_normal(xy - center + offset, 1.3**2 * np.eye(2)).logpdf(reading)
                    for xy in cells[f]
                ]
            )
            joint = ll[rows].sum(0) + track + logw[cells[f][:, 1] * 12 + cells[f][:, 0]]
            return logsumexp(joint), cells[f][joint.argmax()]

        splits = range(MIN_BINS, n - MIN_BINS + 1)
        both = np.array([evidence(slice(0, s))[0] + evidence(slice(s, n))[0] for s in splits])
        expected = logsumexp(both) - np.log(both.size) - evidence(slice(0, n))[0]
        assert float(log_bf[f]) == pytest.approx(expected, rel=1e-9, abs=1e-9)
        best = list(splits)[int(both.argmax())]
        assert int(at[f]) == bins[best]
        apart = evidence(slice(0, best))[1] - evidence(slice(best, n))[1]
        assert float(jump[f]) == pytest.approx(float(np.hypot(*apart)))
        checked += 1
    assert checked >= 3


def test_split_data_relabels_in_time_order(problem):
    prob, _ = problem
    d = prob.data
    fix = d.fixation.numpy()
    cut_in = [1, 3]
    at = torch.tensor([np.flatnonzero(fix == f)[MIN_BINS] for f in cut_in])
    new = split_data(d, at)
    nf = new.fixation.numpy()
    assert new.n_fixations == d.n_fixations + 2
    assert ((nf >= 0) == (fix >= 0)).all()
    # each old fixation maps to one new one, or to two consecutive ones split at ``at``
    for f in range(d.n_fixations):
        bins = np.flatnonzero(fix == f)
        parts = np.unique(nf[bins])
        assert len(parts) == (2 if f in cut_in else 1)
        if f in cut_in:
            assert (nf[bins] == parts[0]).sum() == MIN_BINS
        for p in parts:
            own = np.flatnonzero(nf == p)
            expect = (np.asarray(d.eye_px)[own] - np.asarray(d.geometry.center_px)).mean(0)
            np.testing.assert_allclose(new.fix_reading[p].numpy(), expect, atol=1e-9)
            assert new.fix_ids[p] == d.fix_ids[f]
    order = new.fixation[new.fit_bins].numpy()
    assert (np.diff(order) >= 0).all()


def test_a_hidden_saccade_is_cut_where_the_eye_jumped(tmp_path):
    """The whole-fit benchmark's noise session (1 minute, through NWB) with two
    fixations 4-8 px apart given one id, as ingest leaves a saccade the reading does not
    show: the fit cuts that fixation at the first bin after the saccade, every cut it
    makes separates true positions at least 2 px apart (the oracle: the simulated gaze),
    and the merged bins are within 1 px RMS where one position for both parts would
    leave at least 2 px (half the step)."""
    sim = make_session("noise", seed=3, n_bins=3600, ppd=32.0, stim_center_deg=(0.0, 0.0))
    session = through_nwb(sim, tmp_path)
    truth = true_px(session)
    fix = session["fixation"].values.copy()
    ids = np.unique(fix[fix >= 0])
    means = np.array([truth[fix == i].mean(0) for i in ids])
    sizes = np.array([(fix == i).sum() for i in ids])
    step = np.linalg.norm(np.diff(means, axis=0), axis=1)
    j = int(np.flatnonzero((step >= 4) & (step <= 8) & (sizes[:-1] >= 10) & (sizes[1:] >= 10))[0])
    second = np.flatnonzero(fix == ids[j + 1])
    fix[second] = ids[j]
    merged = np.flatnonzero(fix == ids[j])
    session["fixation"] = (session["fixation"].dims, fix, session["fixation"].attrs)

    est = GazeEM(patch_size=16, latent="fixation", grid_margin_px=8, device="cpu").fit(session)
    parts = est.fit_.fixation_of_bin
    assert est.fit_.n_split >= 1
    assert len(np.unique(parts[merged])) == 2
    assert (parts[merged] == parts[second[0]]).sum() == second.size  # cut at its first bin
    part_ids = est.fit_.fixations["id"]
    cut = [p for p in np.unique(part_ids) if (part_ids == p).sum() == 2]
    assert len(cut) == est.fit_.n_split
    for p in cut:
        a, b = np.flatnonzero(part_ids == p)
        assert np.linalg.norm(truth[parts == a].mean(0) - truth[parts == b].mean(0)) >= 2.0
    est_mean = est.gaze_per_bin()["mean"]
    assert rms(est_mean[merged], truth[merged]) < 1.0


def test_held_frames_share_crops_and_give_the_same_evidence(monkeypatch):
    """Frames held 7 bins: the scan scores a run's bins from one crop; the Bayes factors
    and split bins equal those of one crop per bin."""
    from gazeem.gaze import batches
    from tests.gaze.test_held_frames import problem as held_problem

    session = make_session(
        "small", seed=3, n_bins=900, n_units=6, stim_rows=32, stim_cols=32, patch_size=8,
        frame_hold=7, stimulus="gaussian", gaze_range_px=6.0, rf_sigma_px=(1.0, 1.5),
    )  # fmt: skip
    prob, _ = held_problem(session)
    prob.e_step()
    pooled = split_evidence(prob)
    calls = []
    real = prob.response.shared_window_log_likelihood
    monkeypatch.setattr(
        prob.response, "shared_window_log_likelihood", lambda *a: calls.append(1) or real(*a)
    )
    split_evidence(prob)
    assert calls  # the pooled path ran
    monkeypatch.setattr(batches, "POOL_BELOW", 0.0)
    per_bin = split_evidence(prob)
    finite = torch.isfinite(per_bin[0])
    assert finite.sum() >= 10
    assert torch.equal(finite, torch.isfinite(pooled[0]))
    torch.testing.assert_close(pooled[0][finite], per_bin[0][finite], rtol=1e-9, atol=1e-6)
    assert torch.equal(pooled[1], per_bin[1])
