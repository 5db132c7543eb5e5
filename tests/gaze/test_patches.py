"""Lazily read frames: the same crops and the same fit as frames held in memory."""

import warnings

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from gazeem.gaze.estimator import GazeEM
from gazeem.gaze.patches import FrameSource, encode_values, gather_crops
from gazeem.io.dataset import write_netcdf_atomic
from tests.conftest import make_session


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    frames = np.random.default_rng(0).normal(size=(600, 9, 11)).astype(np.float32)
    path = tmp_path_factory.mktemp("frames") / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("s", data=frames, chunks=(64, 9, 11), compression="gzip")
    f = h5py.File(path, "r")
    yield frames, f["s"]
    f.close()


@pytest.mark.parametrize(
    "index",
    [
        np.arange(100, 260),  # one contiguous run
        np.r_[np.arange(0, 50), np.arange(400, 420)],  # two runs, a large gap
        np.arange(5, 590, 3),  # dense with holes: one slice read
        np.arange(0, 600, 37),  # sparse: point selection
        np.array([7, 7, 3, 599, 3, 250]),  # repeats, unsorted
    ],
)
def test_lazy_get_returns_the_frames_asked_for(stack, index):
    frames, dset = stack
    src = FrameSource(dset, torch.device("cpu"), torch.float32)
    got = src.get(torch.as_tensor(index))
    np.testing.assert_array_equal(got.numpy(), frames[index])


def test_lazy_and_in_memory_crops_agree(stack):
    frames, dset = stack
    rng = np.random.default_rng(1)
    idx = torch.as_tensor(rng.integers(-1, 600, size=(50, 3)))
    top = torch.as_tensor(rng.integers(-4, 8, size=50))
    left = torch.as_tensor(rng.integers(-4, 10, size=50))
    cpu = torch.device("cpu")
    lazy = gather_crops(FrameSource(dset, cpu, torch.float32), idx, top, left, 5)
    mem = gather_crops(FrameSource(torch.from_numpy(frames), cpu, torch.float32), idx, top, left, 5)
    torch.testing.assert_close(lazy, mem, rtol=0, atol=0)
    assert (lazy[idx[:, 0] < 0, 0] == 0).all()


def test_fit_from_lazily_read_frames_equals_in_memory_fit(tmp_path):
    ds = make_session("small", seed=3)
    path = tmp_path / "s.nc"
    write_netcdf_atomic(ds, path)
    fits = []
    with warnings.catch_warnings(), xr.open_dataset(path, engine="h5netcdf") as on_disk:
        warnings.simplefilter("ignore")
        for in_memory in (True, False):
            est = GazeEM(
                patch_size=12,
                max_iter=2,
                window_k=3.0,
                device="cpu",
                dtype="float64",
                frames_in_memory=in_memory,
            )
            fits.append(est.fit(on_disk))
    a, b = fits
    # chunks differ in size (lazy chunks count the frames they read), so sums differ in
    # order and L-BFGS stops a little elsewhere. In float32 EM carried that to 1.3e-3 of
    # the RF's scale (the fused likelihood sums in another order); float64 keeps the
    # comparison about the frames: L-BFGS (stopping at 1e-6 relative) leaves 1e-4 of it
    tol = 1e-4 * np.abs(a.rf_).max()
    np.testing.assert_allclose(b.rf_, a.rf_, rtol=0, atol=tol)
    np.testing.assert_allclose(
        b.fixation_summary()["mean"], a.fixation_summary()["mean"], atol=0.01
    )


# -- one-byte codes (issue 19): a stimulus of at most 256 values in a quarter of the memory


@pytest.mark.parametrize("levels", [(-1.0, 1.0), (-1.0, 0.0, 1.0), tuple(np.linspace(-1, 1, 255))])
def test_coded_frames_give_the_same_crops_bit_for_bit(levels):
    rng = np.random.default_rng(2)
    frames = np.asarray(levels, dtype=np.float32)[rng.integers(0, len(levels), (300, 9, 11))]
    cpu = torch.device("cpu")
    coded = FrameSource(torch.from_numpy(frames), cpu, torch.float32)
    plain = FrameSource(torch.from_numpy(frames), cpu, torch.float32, coded=False)
    assert coded.coded and coded.tensor.dtype == torch.uint8 and not plain.coded
    assert coded.tensor.element_size() * 4 == plain.tensor.element_size()
    idx = torch.as_tensor(rng.integers(-1, 300, size=(60, 2)))
    top = torch.as_tensor(rng.integers(-6, 8, size=60))
    left = torch.as_tensor(rng.integers(-6, 10, size=60))
    want = gather_crops(plain, idx, top, left, 6)
    assert torch.equal(gather_crops(coded, idx, top, left, 6), want)
    raw = gather_crops(coded, idx, top, left, 6, raw=True)
    assert raw.dtype == torch.uint8 and torch.equal(coded.decode(raw), want)
    assert torch.equal(coded.get(torch.tensor([5, 3, 5])), plain.get(torch.tensor([5, 3, 5])))


def test_more_than_256_values_are_held_as_values(stack):
    frames, dset = stack  # normal noise: every value distinct
    cpu = torch.device("cpu")
    assert not FrameSource(torch.from_numpy(frames), cpu, torch.float32).coded
    assert not FrameSource(dset, cpu, torch.float32).in_memory
    # 255 values and the background 0 fill the 256 codes; one more value does not fit
    assert encode_values([torch.arange(1, 256.0)], torch.float32) is not None
    assert encode_values([torch.arange(1, 257.0)], torch.float32) is None
    assert encode_values([torch.tensor([1.0, float("nan")])], torch.float32) is None


def test_a_lazily_read_binary_stimulus_is_loaded_as_codes(tmp_path):
    frames = (np.random.default_rng(3).integers(0, 2, (500, 8, 8)) * 2 - 1).astype(np.float32)
    path = tmp_path / "b.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("s", data=frames, chunks=(64, 8, 8))
    with h5py.File(path, "r") as f:
        src = FrameSource(f["s"], torch.device("cpu"), torch.float32)
        assert src.coded and src.in_memory
        np.testing.assert_array_equal(src.get(torch.arange(500)).numpy(), frames)
        assert not FrameSource(f["s"], torch.device("cpu"), torch.float32, coded=False).coded
