"""Checkpoints: weights in safetensors, optimizer/scheduler/scaler/RNG state beside them, atomically.

A checkpoint directory holds ``weights.safetensors`` (the modules' weights under ``PREFIX.``),
``train_state.pt`` (everything needed to resume, RNG states included) and ``meta.json`` (epochs
counted from 1, as everywhere a user reads them).  It is replaced in two renames
(:func:`xmodalzoo.files.commit_dir`); a crash between them leaves only a complete ``.NAME.old``, which
:func:`load_checkpoint` falls back to, so resuming never loses it.  With ``keep_as`` the checkpoint being
replaced is kept there (hard links, no copy): a damaged newer one then still has a good predecessor.
Files are read through :mod:`xmodalzoo.weights` (a damaged one: a one-line ``WeightsFileError``).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsFileError
from ..files import atomic_dir, commit_dir, committed_dir
from ..weights import read_safetensors, read_torch_file
from .rng import rng_state

WEIGHTS = "weights.safetensors"
STATE = "train_state.pt"
META = "meta.json"


def state_dict_for_save(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """One flat dict ``{prefix.name: tensor}`` (shared storage cloned, as safetensors requires)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for k, v in module.state_dict().items():
            out[f"{prefix}.{k}"] = v.detach().cpu().clone().contiguous()
    return out


def load_weights(path: Path, modules: dict[str, nn.Module], strict: bool = True) -> None:
    """Load the weights file ``path`` into ``modules`` (each under its ``prefix.``)."""
    apply_weights(read_safetensors(path), modules, strict)


def apply_weights(flat: dict[str, torch.Tensor], modules: dict[str, nn.Module], strict: bool = True) -> None:
    """Load the flat ``{prefix.name: tensor}`` dict ``flat`` into ``modules``."""
    for prefix, module in modules.items():
        sub = {k[len(prefix) + 1 :]: v for k, v in flat.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sub, strict=strict)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copy2(src, dst)


def save_checkpoint(directory: Path, modules: dict[str, nn.Module], train_state: dict[str, Any],
                    meta: dict[str, Any], *, reuse_weights: bool = False, keep_as: Path | None = None) -> None:
    """Write weights, training state and metadata into ``directory`` atomically.

    ``reuse_weights``: the weights have not changed since the checkpoint now at ``directory`` (or its
    ``.old``) was written, so its weights file is hard-linked (copied where links are not supported)
    instead of written again; only the training state and metadata are new.  Without such a
    checkpoint the weights of ``modules`` are written.

    ``keep_as``: the checkpoint now at ``directory`` is kept there (its files hard-linked, replacing
    what was there) before the new one replaces it.
    """
    from safetensors.torch import save_file

    previous = committed_dir(directory) if reuse_weights else None
    tmp = atomic_dir(directory)
    try:
        if previous is not None and (previous / WEIGHTS).is_file():
            _link_or_copy(previous / WEIGHTS, tmp / WEIGHTS)
        else:
            save_file(state_dict_for_save(modules), str(tmp / WEIGHTS))
        torch.save({**train_state, "rng": rng_state()}, tmp / STATE)
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
        current = committed_dir(directory) if keep_as is not None else None
        if current is not None and keep_as is not None:
            keep_copy(current, keep_as)
        commit_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def keep_copy(src: Path, dst: Path) -> None:
    """Replace the directory ``dst`` by a copy of ``src`` made of hard links (atomically)."""
    tmp = atomic_dir(dst)
    try:
        for f in src.iterdir():
            if f.is_file():
                _link_or_copy(f, tmp / f.name)
        commit_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(flat weights, training state)`` of the complete checkpoint directory ``directory``, both
    files read and checked before anything is loaded (a damaged one: ``WeightsFileError``)."""
    flat = read_safetensors(directory / WEIGHTS)
    # our own file: optimizer states hold plain tensors and python containers
    state = read_torch_file(directory / STATE, weights_only=False)
    if not isinstance(state, dict):
        raise WeightsFileError(str(directory / STATE), f"holds a {type(state).__name__}, not a training state")
    return flat, state


def load_checkpoint(directory: Path, modules: dict[str, nn.Module], *,
                    missing_ok: bool = False) -> dict[str, Any] | None:
    """Load weights into ``modules`` and return the training state (RNG not yet restored).

    ``directory`` falls back to its ``.old`` copy when only that exists
    (:func:`xmodalzoo.files.committed_dir`); when neither does: FileNotFoundError, or None with
    ``missing_ok``.
    """
    found = committed_dir(directory)
    if found is None:
        if missing_ok:
            return None
        raise FileNotFoundError(f"no checkpoint at {directory}")
    flat, state = read_checkpoint(found)
    apply_weights(flat, modules)
    return state
