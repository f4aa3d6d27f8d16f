"""Atomic checkpoints: weights in safetensors, optimizer/scheduler/scaler/RNG state beside them.

A checkpoint directory is replaced in two renames (``final`` -> ``.final.old``, then the new one
-> ``final``).  A crash between them leaves only ``.final.old``, a complete checkpoint:
:func:`checkpoint_path` falls back to it (and :func:`load_checkpoint` through it), so resuming
never loses it.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

WEIGHTS = "weights.safetensors"
STATE = "train_state.pt"
META = "meta.json"


def atomic_dir(final: Path) -> Path:
    """A fresh temporary directory next to ``final`` (move it in place with :func:`commit_dir`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def old_dir(final: Path) -> Path:
    """Where :func:`commit_dir` parks the previous ``final`` while swapping in the new one."""
    return final.with_name(f".{final.name}.old")


def checkpoint_path(final: Path) -> Path | None:
    """``final`` when it is a directory; else ``.final.old`` when a crash between the two renames of
    :func:`commit_dir` left only that (a complete earlier checkpoint); else None."""
    final = Path(final)
    if final.is_dir():
        return final
    old = old_dir(final)
    return old if old.is_dir() else None


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp``; a reader never sees a half-written directory."""
    old = None
    if final.exists():
        old = old_dir(final)
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    elif old_dir(final).exists():
        old = old_dir(final)  # left by a crash between the renames: removed once the new one is in place
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite the JSONL file ``path`` atomically with only the records for which ``keep(record)`` is
    true (unparsable lines, e.g. one cut short by a crash, are dropped too); returns how many went."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if keep(record):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, path)
    return dropped


def state_dict_for_save(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """One flat dict ``{prefix.name: tensor}`` (shared storage cloned, as safetensors requires)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for k, v in module.state_dict().items():
            out[f"{prefix}.{k}"] = v.detach().cpu().clone().contiguous()
    return out


def load_weights(path: Path, modules: dict[str, nn.Module], strict: bool = True) -> None:
    from safetensors.torch import load_file

    flat = load_file(str(path))
    for prefix, module in modules.items():
        sub = {k[len(prefix) + 1 :]: v for k, v in flat.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sub, strict=strict)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copy2(src, dst)


def save_checkpoint(directory: Path, modules: dict[str, nn.Module], train_state: dict[str, Any],
                    meta: dict[str, Any], *, reuse_weights: bool = False) -> None:
    """Write weights, training state and metadata into ``directory`` atomically.

    ``reuse_weights``: the weights have not changed since the checkpoint now at ``directory`` (or its
    ``.old``) was written, so its weights file is hard-linked (copied where links are not supported)
    instead of written again; only the training state and metadata are new.  Without such a
    checkpoint the weights of ``modules`` are written.
    """
    from safetensors.torch import save_file

    previous = checkpoint_path(directory) if reuse_weights else None
    tmp = atomic_dir(directory)
    try:
        if previous is not None and (previous / WEIGHTS).is_file():
            _link_or_copy(previous / WEIGHTS, tmp / WEIGHTS)
        else:
            save_file(state_dict_for_save(modules), str(tmp / WEIGHTS))
        torch.save({**train_state, "rng": rng_state()}, tmp / STATE)
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
        commit_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(directory: Path, modules: dict[str, nn.Module], *,
                    missing_ok: bool = False) -> dict[str, Any] | None:
    """Load weights into ``modules`` and return the training state (RNG not yet restored).

    ``directory`` falls back to its ``.old`` copy when only that exists (see :func:`checkpoint_path`);
    when neither does: FileNotFoundError, or None with ``missing_ok``.
    """
    found = checkpoint_path(directory)
    if found is None:
        if missing_ok:
            return None
        raise FileNotFoundError(f"no checkpoint at {directory}")
    directory = found
    load_weights(directory / WEIGHTS, modules)
    # our own file: optimizer states hold plain tensors and python containers
    return torch.load(directory / STATE, map_location="cpu", weights_only=False)
