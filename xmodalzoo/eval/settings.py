"""What makes two evaluations the same: the split, the data, the protocols and the evaluation options
that change numbers (not ``batch_size``, ``max_bytes``, ``device`` or ``num_workers``, which only change
how the work is done: the similarity engine gives the same scores in any block size).

``zoo eval`` writes the results of an evaluation with a run's own settings to the run's results file
(``eval_results.json`` for the test split); any other evaluation goes to a file named by its split and
:func:`settings_tag`, so it never replaces the training results.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

#: evaluation options that change how the work is done, never the numbers
EXECUTION_ONLY = ("batch_size", "max_bytes", "device", "num_workers")


def evaluation_settings(recipe: Any, split: str, protocols: Sequence[str] | None = None) -> dict[str, Any]:
    """The settings that decide the numbers of evaluating ``split`` of ``recipe``'s data with
    ``protocols`` (default: the recipe's ``eval.protocols``), as plain JSON values."""
    eval_cfg = {k: v for k, v in recipe.eval.model_dump(mode="json").items() if k not in EXECUTION_ONLY}
    eval_cfg["protocols"] = list(protocols) if protocols else eval_cfg.get("protocols")
    return {"split": split, "data": recipe.data.model_dump(mode="json"), "eval": eval_cfg}


def settings_tag(settings: dict[str, Any]) -> str:
    """8 hex digits of the SHA-256 of ``settings`` (canonical JSON): equal settings, equal tags."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def differences(settings: dict[str, Any], reference: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two settings mappings (``data.root``, ``split``...)."""
    out = []
    for key in sorted(set(settings) | set(reference)):
        a, b = settings.get(key), reference.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


__all__ = ["EXECUTION_ONLY", "differences", "evaluation_settings", "settings_tag"]
