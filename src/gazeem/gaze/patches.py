"""Cutting stimulus crops and retinal patches out of frames, without padding copies.

Kernels here do not validate their inputs.
"""

from __future__ import annotations

import numpy as np
import torch

_MAX_GAP = 64  # frames; a typical HDF5 chunk along time
#: a stimulus with at most this many distinct values is held as one-byte codes
N_CODES = 256
#: a lazily read stimulus is loaded as codes when they take at most this many bytes
CODED_MAX_BYTES = 2**30
_CODE_CHUNK = 2**24  # values encoded at a time
_CODE_SAMPLE = 2**16  # values whose distinct values are counted first


def encode_values(chunks, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One-byte codes of a stimulus with at most :data:`N_CODES` distinct values.

    ``chunks`` yields the stimulus a piece at a time (arrays or tensors). Returns
    ``(codes (n,) uint8, table (N_CODES,))`` with ``table[codes]`` equal to the values,
    bit for bit, in ``dtype``, and 0 (the background outside the stimulus) always in the
    table; or ``None`` when the values are more than that (natural images stored as
    floats, say). Binary and ternary noise and 8-bit images take 2–256 values, so their
    frames and patches take a quarter of the memory of float32 (issue 19).
    """
    table = torch.zeros(1, dtype=dtype)  # code 0 is 0.0
    out = []
    for chunk in chunks:
        x = torch.as_tensor(chunk).to(dtype).reshape(-1)
        if not bool(torch.isfinite(x).all()):
            return None
        if not out:  # the values of a prefix first: a continuous stimulus stops here, cheaply
            head = torch.unique(x[:_CODE_SAMPLE])
            if int((head != 0).sum()) + 1 > N_CODES:
                return None
            table = torch.cat([table, head[head != 0]])
        order = torch.argsort(table)
        sorted_vals = table[order]
        i = torch.searchsorted(sorted_vals, x).clamp_max(table.numel() - 1)
        hit = sorted_vals[i] == x
        if not bool(hit.all()):
            new = torch.unique(x[~hit])
            if table.numel() + new.numel() > N_CODES:
                return None
            table = torch.cat([table, new])
            order = torch.argsort(table)
            sorted_vals = table[order]
            i = torch.searchsorted(sorted_vals, x)
        out.append(order[i].to(torch.uint8))
    full = torch.zeros(N_CODES, dtype=dtype)
    full[: table.numel()] = table
    return (torch.cat(out) if out else torch.zeros(0, dtype=torch.uint8)), full


def _pieces(frames, n_values: int):
    """``frames`` read ``_CODE_CHUNK`` values (whole frames) at a time."""
    per = max(1, _CODE_CHUNK // max(1, n_values // max(1, frames.shape[0])))
    for lo in range(0, frames.shape[0], per):
        yield np.asarray(frames[lo : lo + per])


class FrameSource:
    """Stimulus frames ``(n_frames, rows, cols)``, fetched a few at a time.

    Wraps an in-memory tensor or any lazily indexed array (an xarray variable or
    an h5py dataset), so that a fit of an hour-long session never needs all frames
    in memory at once. With ``coded`` (the default), a stimulus of at most 256 distinct
    values (:func:`encode_values`) is held in memory as one-byte codes, a lazily read one
    too when its codes fit in :data:`CODED_MAX_BYTES`; crops come out decoded, exact.
    """

    def __init__(
        self, frames, device: torch.device, dtype: torch.dtype, coded: bool = True
    ) -> None:
        self._frames = frames
        self.device = device
        self.dtype = dtype
        self.shape = tuple(int(s) for s in frames.shape)
        self._in_memory = isinstance(frames, torch.Tensor)
        #: ``(N_CODES,)`` the value of each code, or ``None`` (frames held as values)
        self.table: torch.Tensor | None = None
        n = int(np.prod(self.shape))
        if coded and (self._in_memory or n <= CODED_MAX_BYTES):
            flat = frames.reshape(-1).split(_CODE_CHUNK) if self._in_memory else None
            enc = encode_values(_pieces(frames, n) if flat is None else flat, dtype)
            if enc is not None:
                self._frames = enc[0].reshape(self.shape).to(device)
                self.table = enc[1].to(device)
                self._in_memory = True
                return
        if self._in_memory:
            self._frames = frames.to(device=device, dtype=dtype)

    @property
    def in_memory(self) -> bool:
        return self._in_memory

    @property
    def coded(self) -> bool:
        """Whether the frames are held as one-byte codes into :attr:`table`."""
        return self.table is not None

    @property
    def tensor(self) -> torch.Tensor:
        """The whole stimulus ``(n_frames, rows, cols)`` (in-memory sources only): values,
        or codes when :attr:`coded`."""
        return self._frames

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Values of ``x``: codes from ``gather_crops(..., raw=True)``, or values as they are."""
        if self.table is None or x.dtype != torch.uint8:
            return x
        return self.table[x.to(torch.int64)]

    def get(self, index: torch.Tensor) -> torch.Tensor:
        """Frames at ``index (k,)`` (all >= 0), as ``(k, rows, cols)`` on the device."""
        if self._in_memory:
            return self.decode(self._frames[index])
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
    raw: bool = False,
) -> torch.Tensor:
    """Square crops of the stimulus, zero outside the frame and for missing frames.

    With ``raw``, a coded source (:attr:`FrameSource.coded`) gives its uint8 codes
    (:meth:`FrameSource.decode` turns them into values): a quarter of the memory to keep.

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
    crops = crops * mask.to(crops.dtype)  # a coded source's code 0 is the value 0
    return crops if raw else frames.decode(crops)
