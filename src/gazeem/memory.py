"""Memory a request needs, checked before it is allocated.

A setting off by orders of magnitude (``bin_s = 1e-6``, ``n_bins = 1e12``) or a file that
declares billions of samples must stop with the number and the setting to change, not
start an allocation that takes the machine down. The limit is 80% of the machine's
physical memory, or ``GAZEEM_MAX_MEMORY_MB`` when that is set (a SLURM job's
``--mem``, say).
"""

from __future__ import annotations

import os

from gazeem.errors import GazeemError

GIB = 2**30


def memory_limit_bytes() -> int:
    """Bytes that one request may allocate."""
    env = os.environ.get("GAZEEM_MAX_MEMORY_MB")
    if env:
        try:
            return int(float(env) * 2**20)
        except ValueError:
            raise GazeemError(
                f"GAZEEM_MAX_MEMORY_MB={env!r}: field 'GAZEEM_MAX_MEMORY_MB': not a number."
            ) from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not every platform reports it
        total = 16 * GIB
    return int(0.8 * total)


def check_allocation(nbytes: float, where: str, field: str, what: str, fix: str) -> None:
    """Raise :class:`GazeemError` when ``nbytes`` exceeds :func:`memory_limit_bytes`.

    ``where`` is the file (or settings) at fault, ``field`` the setting or field to change,
    ``what`` the request in words, ``fix`` what to do.
    """
    limit = memory_limit_bytes()
    if nbytes > limit:
        raise GazeemError(
            f"{where}: field '{field}': {what} needs {nbytes / GIB:,.1f} GiB, more than the "
            f"{limit / GIB:,.1f} GiB allowed (80% of this machine's memory, or "
            f"GAZEEM_MAX_MEMORY_MB); {fix}"
        )
