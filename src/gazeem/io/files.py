"""Opening gazeem's own files safely, and writing every output atomically.

Every stage reads its inputs through :func:`open_netcdf` and writes its outputs through
:func:`atomic_output`, so that

- a missing, empty, truncated or foreign input gives one :class:`GazeemError` naming the
  file and what is wrong (never an h5py traceback);
- an output appears complete or not at all: it is written to a hidden temporary file
  beside it (``.{name}.{pid}.{random}.tmp{suffix}``) and renamed into place;
- a temporary file left by a writer that was killed (``kill -9``) is removed the next
  time the same output is written (its process id is no longer alive);
- the output gets the permissions of an ordinary new file (``0666`` less the umask), not
  the ``0600`` of a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import h5py
import xarray as xr

from gazeem.errors import GazeemError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove ``.{name}.{pid}.*.tmp{suffix}`` beside ``path`` whose writer is no longer running."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if len(parts) < 3 or parts[2] != "tmp" or not parts[0].isdigit():
            continue
        if int(parts[0]) != os.getpid() and not _pid_alive(int(parts[0])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On any exception (including ``KeyboardInterrupt``) the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # the output's suffix is kept, for writers that pick a format by it (NWB, matplotlib)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise GazeemError(f"{path}: nothing was written.")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_readable_hdf5(path: str | os.PathLike, what: str) -> Path:
    """Check that ``path`` exists and starts like an HDF5 file; return it as a Path.

    ``what`` says what the file should be ("session dataset", "fit result", ...), for the
    message.
    """
    path = Path(path)
    if not path.exists():
        raise GazeemError(f"{path}: field 'path': no such file (expected a {what}).")
    if path.is_dir():
        raise GazeemError(f"{path}: field 'path': is a folder, not a {what}.")
    size = path.stat().st_size
    if size == 0:
        raise GazeemError(f"{path}: field '/': the file is empty (0 bytes); expected a {what}.")
    with open(path, "rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        raise GazeemError(
            f"{path}: field '/': not an HDF5/NetCDF4 file (no HDF5 signature); expected a {what}."
        )
    return path


@contextlib.contextmanager
def open_netcdf(
    path: str | os.PathLike, what: str, required: tuple[str, ...] = ()
) -> Iterator[xr.Dataset]:
    """Open one of gazeem's NetCDF4 files lazily, with a clear error for a bad file.

    Parameters
    ----------
    path
        The file.
    what
        What it should be: ``"session dataset"``, ``"fit result"``, ``"parameter table"``.
    required
        Variables it must hold; the first missing one is named in the error.
    """
    path = check_readable_hdf5(path, what)

    def unreadable(err: Exception) -> GazeemError:
        return GazeemError(
            f"{path}: field '/': cannot be read as a {what}; the file may be truncated or not a "
            f"NetCDF4 file ({type(err).__name__}: {short_message(err)})."
        )

    try:
        with h5py.File(path, "r") as f:
            is_nwb = "nwb_version" in f.attrs
    except Exception as err:  # h5py raises OSError for truncated files, others for odd ones
        raise unreadable(err) from None
    if is_nwb:
        raise GazeemError(
            f"{path}: field '/': is an NWB file, not a {what}; run `gazeem ingest` on it first."
        )
    try:
        ds = xr.open_dataset(path, engine="h5netcdf")
    except Exception as err:
        raise unreadable(err) from None
    with ds:
        for name in required:
            if name not in ds.variables:
                raise GazeemError(
                    f"{path}: field '{name}': missing; is this a gazeem {what}? "
                    f"(it holds {sorted(ds.data_vars)[:8]})"
                )
        yield ds


def short_message(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
