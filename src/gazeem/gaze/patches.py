"""Cutting stimulus crops and retinal patches out of frames, without padding copies.

Kernels here do not validate their inputs.
"""

from __future__ import annotations

import numpy as np
import torch

_MAX_GAP = 64  # frames; a typical HDF5 chunk along time


class FrameSource:
    """Stimulus frames ``(n_frames, rows, cols)``, fetched a few at a time.

    Wraps an in-memory tensor or any lazily indexed array (an xarray variable or
    an h5py dataset), so that a fit of an hour-long session never needs all frames
    in memory at once.
    """

    def __init__(self, frames, device: torch.device, dtype: torch.dtype) -> None:
        self._frames = frames
        self.device = device
        self.dtype = dtype
        self.shape = tuple(int(s) for s in frames.shape)
        self._in_memory = isinstance(frames, torch.Tensor)
        if self._in_memory:
            self._frames = frames.to(device=device, dtype=dtype)

    @property
    def in_memory(self) -> bool:
        return self._in_memory

    @property
    def tensor(self) -> torch.Tensor:
        """The whole stimulus ``(n_frames, rows, cols)`` (in-memory sources only)."""
        return self._frames

    def get(self, index: torch.Tensor) -> torch.Tensor:
        """Frames at ``index (k,)`` (all >= 0), as ``(k, rows, cols)`` on the device."""
        if self._in_memory:
            return self._frames[index]
        idx = index.cpu().numpy()
        uniq, inverse = np.unique(idx, return_inverse=True)
        block = torch.from_numpy(self._read_sorted(uniq)).to(device=self.device, dtype=self.dtype)
        if uniq.size == idx.size:  # already unique and sorted (as gather_crops asks)
            return block
        return block[torch.from_numpy(inverse.reshape(-1)).to(self.device)]

    def _read_sorted(self, uniq: np.ndarray) -> np.ndarray:
        """Frames at sorted unique ``uniq``, read as contiguous slices.

        HDF5 point selections (fancy indexing) decompress the same chunks again and
        again: reading whole runs and dropping the few unused frames is ~6x faster.
        A run is split where the gap exceeds ``_MAX_GAP`` frames, and a sparse run (span
        over four times the frames it holds) falls back to a point selection, so a read
        never holds more than four times the frames asked for.
        """
        breaks = np.flatnonzero(np.diff(uniq) > _MAX_GAP) + 1
        parts = []
        for run in np.split(uniq, breaks):
            lo, hi = int(run[0]), int(run[-1]) + 1
            if hi - lo > 4 * run.size:
                parts.append(np.asarray(self._frames[run]))
                continue
            span = np.asarray(self._frames[lo:hi])
            parts.append(span if hi - lo == run.size else span[run - lo])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def bytes_per_frame_read(self) -> int:
        """Memory a chunk needs per distinct frame it touches: 0 in memory, a frame otherwise."""
        if self._in_memory:
            return 0
        return int(np.prod(self.shape[1:])) * torch.empty((), dtype=self.dtype).element_size()


def lagged_frame_index(frame: torch.Tensor, bins: torch.Tensor, n_lags: int) -> torch.Tensor:
    """Frame shown at bins ``t, t-1, ..., t-n_lags+1`` for each bin in ``bins``.

    Returns ``(len(bins), n_lags)`` int64; -1 where no frame was shown (or before t=0).
    """
    lags = torch.arange(n_lags, device=bins.device)
    src = bins[:, None] - lags[None, :]
    out = torch.full(src.shape, -1, dtype=torch.int64, device=bins.device)
    ok = src >= 0
    out[ok] = frame[src[ok]].to(torch.int64)
    return out


def gather_crops(
    frames: FrameSource,
    frame_index: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Square crops of the stimulus, zero outside the frame and for missing frames.

    Parameters
    ----------
    frames
        The stimulus.
    frame_index
        ``(T, L)`` frame per item and lag; -1 gives a blank (zero) crop.
    top, left
        ``(T,)`` stimulus row and column of each crop's top-left pixel (may be < 0).
    size
        Side of the crops, pixels.

    Returns
    -------
    ``(T, L, size, size)`` tensor on the frames' device.
    """
    t, n_lags = frame_index.shape
    rows_total, cols_total = frames.shape[1], frames.shape[2]
    dev = frames.device
    flat = frame_index.reshape(-1).to(dev)
    shown = flat >= 0
    if frames.in_memory:
        # index the crops straight out of the stimulus: no copy of whole frames, so the
        # cost does not grow with the size of the screen
        block, inv = frames.tensor, flat.clamp_min(0)
    else:
        uniq, inv = torch.unique(flat.clamp_min(0), return_inverse=True)
        block = frames.get(uniq)  # (U, rows, cols): whole frames, read once per chunk
    ar = torch.arange(size, device=dev)
    rows = top.to(dev)[:, None] + ar[None, :]  # (T, size)
    cols = left.to(dev)[:, None] + ar[None, :]
    row_ok = (rows >= 0) & (rows < rows_total)
    col_ok = (cols >= 0) & (cols < cols_total)
    rows_c = rows.clamp(0, rows_total - 1)
    cols_c = cols.clamp(0, cols_total - 1)
    inv = inv.reshape(t, n_lags)
    crops = block[
        inv[:, :, None, None],
        rows_c[:, None, :, None],
        cols_c[:, None, None, :],
    ]
    mask = (
        row_ok[:, None, :, None]
        & col_ok[:, None, None, :]
        & shown.reshape(t, n_lags)[:, :, None, None]
    )
    return crops * mask.to(crops.dtype)
