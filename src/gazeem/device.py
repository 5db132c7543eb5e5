"""Choice of torch device and floating-point precision."""

from __future__ import annotations

import torch

from gazeem.errors import GazeemError

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a :class:`torch.device`.

    ``"auto"`` picks CUDA when a GPU is visible and the CPU otherwise.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GazeemError(
            f"device={device!r} was asked for, but torch sees no CUDA GPU; "
            "use device='cpu' or device='auto'."
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise GazeemError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}.")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "float32") -> torch.dtype:
    """Turn ``"float32" | "float64"`` into a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise GazeemError(f"dtype must be float32 or float64, got {dtype}.")
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise GazeemError(f"dtype must be 'float32' or 'float64', got {dtype!r}.") from None


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name"), recorded with every fit."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
