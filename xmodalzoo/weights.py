"""Reading weights files: the one place that opens them, so that a damaged file is always named.

Every path that reads weights comes through here: model folders (``model.safetensors``), checkpoints
(``weights.safetensors`` and ``train_state.pt``), backbone checkpoints given as
``image_encoder.checkpoint``.  A missing, truncated or corrupt file raises a one-line
:class:`~xmodalzoo.errors.WeightsFileError` naming the file and what is wrong with it, e.g.::

    runs/x/model/model.safetensors: truncated: 1,000 bytes, its header describes 2,466,104

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name -> dtype,
shape, ``data_offsets``) and the tensor bytes; :func:`check_safetensors` checks that structure
against the file's size before safetensors reads it, so a cut-off file is told apart from garbage.
Content checks (checksums) are the caller's business: this module knows nothing of model folders.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from .errors import WeightsFileError

#: the largest header safetensors itself accepts; a larger length means the file is not safetensors
MAX_HEADER_BYTES = 100_000_000
SAFETENSORS_SUFFIX = ".safetensors"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise WeightsFileError(str(path), "no such file") from None
    except OSError as exc:
        raise WeightsFileError(str(path), f"cannot be read ({exc.strerror or exc})") from None


def check_safetensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON header of the safetensors file ``path`` (``__metadata__`` included), after
    checking that the file holds every byte the header describes; a :class:`WeightsFileError` if not."""
    path = Path(path)
    size = _size(path)
    if path.is_dir():
        raise WeightsFileError(str(path), "is a directory, expected a safetensors file")
    if size < 8:
        raise WeightsFileError(str(path), f"truncated: {size} bytes, not even the 8-byte header length "
                                          "of a safetensors file")
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > MAX_HEADER_BYTES:
            raise WeightsFileError(str(path), f"not a safetensors file (its first 8 bytes give a header of "
                                              f"{header_len:,} bytes)")
        if 8 + header_len > size:
            raise WeightsFileError(str(path), f"truncated: {size:,} bytes, shorter than its own "
                                              f"{header_len:,}-byte header")
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not a mapping")
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
        raise WeightsFileError(str(path), "not a safetensors file (its header is not a JSON table of tensors)") \
            from None
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        raise WeightsFileError(str(path), f"truncated: {size:,} bytes, its header describes {expected:,}")
    if size > expected:
        raise WeightsFileError(str(path), f"corrupt: {size:,} bytes, its header describes {expected:,}")
    return header


def read_safetensors(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """``{name: tensor}`` of the safetensors file ``path`` on ``device`` (checked by :func:`check_safetensors`)."""
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors' own checks (dtypes, shapes vs offsets, overlaps)
        raise WeightsFileError(str(path), f"corrupt ({_first_line(exc)})") from None


def read_torch_file(path: str | os.PathLike[str], *, weights_only: bool = True) -> Any:
    """The object saved by ``torch.save`` in ``path`` (on the CPU); ``weights_only=False`` for the
    zoo's own training states, whose optimizer states are plain Python containers."""
    import torch

    path = Path(path)
    _size(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # a cut-off zip, garbage, a pickle torch refuses: all mean the same to the user
        text = _first_line(exc)
        problem = ("truncated or corrupt (not a complete torch archive)" if "zip archive" in text or
                   isinstance(exc, EOFError) else f"corrupt or not a torch file ({text})")
        raise WeightsFileError(str(path), problem) from None


def read_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state dict from ``path``: a ``.safetensors`` file, or a torch file (``.pt``/``.pth``/``.bin``)
    holding a state dict, possibly under ``state_dict`` or ``model`` (as training scripts save them)."""
    path = Path(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        return read_safetensors(path)
    state = read_torch_file(path, weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise WeightsFileError(str(path), f"holds a {type(state).__name__}, not a state dict")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["check_safetensors", "read_safetensors", "read_torch_file", "read_weights"]
