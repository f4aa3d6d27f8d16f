"""Which torch device to use: the one place that turns a device setting into a ``torch.device``."""
from __future__ import annotations

import torch
from torch import nn

from .errors import DeviceError


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The device that ``spec`` names.

    ``"auto"`` or None: CUDA when available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as
    given.  ``local_rank`` (this process's GPU under ``torchrun``) turns a bare ``cuda`` into
    ``cuda:local_rank``.  Asking for CUDA on a machine without it is a :class:`DeviceError`.
    """
    name = "auto" if spec is None else str(spec)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but CUDA is not available; use device: auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r} ({exc}); expected auto, cpu, cuda or cuda:N") from None


def module_device(module: nn.Module) -> torch.device:
    """Device of the module's first parameter or buffer (CPU when it has none)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")
