"""Reading an official checkpoint without running code from it.

:func:`read_checkpoint` calls ``torch.load(weights_only=True)``: the restricted unpickler rebuilds
tensors, containers and plain Python values only.  Official checkpoints also hold a few plain
objects (the training options as an ``argparse.Namespace``, numpy scalars for a best score); those
classes, and only those, are allow-listed explicitly in :data:`SAFE_GLOBALS`.  A file that needs
anything else is refused with :class:`~xmodalzoo.errors.CheckpointError`, unless the caller passes
``trust_pickle=True``, which unpickles it fully (that can run any code the file contains) after a
warning that says so.
"""
from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def _numpy_globals() -> list[Any]:
    """The numpy classes a pickled numpy scalar or dtype refers to (plain data, no code)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch here
        return []
    found: list[Any] = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            mod = __import__(module, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        found += [getattr(mod, "scalar"), getattr(mod, "_reconstruct")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles dtypes by their class (Float64DType, ...)
        found += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType",
                                               "BoolDType", "Float16DType") if hasattr(dtypes, n)]
    return found


#: the plain classes official checkpoints contain besides tensors, allow-listed for weights_only loading
SAFE_GLOBALS: tuple[Any, ...] = (argparse.Namespace, *_numpy_globals())

TRUST_WARNING = (
    "--trust-pickle: {path} is unpickled with torch.load(weights_only=False), which runs whatever code the "
    "file contains; do this only for files from a source you trust"
)


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """The object stored in ``path`` (a dict, a list of state dicts, ...), loaded on the CPU.

    Raises :class:`CheckpointError` (one line naming the file and the class it needs) when the file
    cannot be read with ``weights_only=True`` and the allow-list, unless ``trust_pickle``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises UnpicklingError, RuntimeError or others
        reason = _refusal(exc)
        if reason is None:
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from None
    if not trust_pickle:
        raise CheckpointError(
            f"{path}: cannot be read safely with torch.load(weights_only=True): it needs {reason}, which is not "
            "allow-listed; pass --trust-pickle only if you trust the file (that runs code from it)"
        )
    warnings.warn(TRUST_WARNING.format(path=path), stacklevel=2)
    return torch.load(path, map_location="cpu", weights_only=False)


_GLOBAL = re.compile(r"Unsupported global:\s*(?:GLOBAL\s+)?([\w.]+)")


def _refusal(exc: BaseException) -> str | None:
    """What the restricted unpickler refused (``the class X``), or None for other failures."""
    text = str(exc)
    if "weights_only" not in text and "Unsupported global" not in text:
        return None
    match = _GLOBAL.search(text)
    return f"the class {match.group(1)}" if match else "a class outside the allow-list"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
