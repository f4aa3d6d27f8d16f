"""What identifies a model for a search index: sha256 digests of its config, weights and tokenizer.

The digests are computed from the model in memory, so a model freshly trained and the same model
reloaded from its folder (or downloaded from the Hub) give the same digests: the config as a model
folder stores it (no training-only batch module, no initial-weight sources), the inference weights
(name, dtype, shape and bytes of each tensor, in name order) and the files the tokenizer saves.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..hub.folder import inference_state_dict, stored_config
from ..method import Method


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_digest(method: Method) -> str:
    """sha256 of the method config as a model folder stores it (canonical JSON)."""
    if method.config is None:
        raise ValueError("the model has no config; build it with zoo.build_method or load it with zoo.load")
    return _sha(json.dumps(stored_config(method.config.model_dump(mode="json")), sort_keys=True).encode())


def weights_digest(method: Method) -> str:
    """sha256 over the inference weights: each tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(inference_state_dict(method).items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_digest(method: Method) -> str:
    """sha256 over the files the tokenizer saves (relative path and bytes, in path order)."""
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        method.tokenizer.save(tmp)
        for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            h.update(str(path.relative_to(tmp)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def model_fingerprint(method: Method) -> dict[str, Any]:
    """``{"method", "config_sha256", "weights_sha256", "tokenizer_sha256"}`` of a model."""
    cfg = method.config
    return {
        "method": getattr(cfg, "type", type(method).__name__),
        "config_sha256": config_digest(method),
        "weights_sha256": weights_digest(method),
        "tokenizer_sha256": tokenizer_digest(method),
    }


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The parts (``config``, ``weights``, ``tokenizer``) whose digests differ."""
    return [key[: -len("_sha256")] for key in ("config_sha256", "weights_sha256", "tokenizer_sha256")
            if recorded.get(key) != current.get(key)]
