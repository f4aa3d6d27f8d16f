"""Saving and reloading tokenizers: a marker file records which tokenizer type a folder holds.

The marker is ``xmodalzoo_tokenizer.json`` (not ``tokenizer_config.json``, which Hugging Face
tokenizers write into the same folder): ``{"type": "word" | "transformers", "options": {...}}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import Tokenizer

MARKER = "xmodalzoo_tokenizer.json"


def write_marker(directory: str | Path, type_: str, options: dict[str, Any]) -> None:
    """Write the marker naming the tokenizer type and its options into ``directory``."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(json.dumps({"type": type_, "options": options}, indent=2))


def read_marker(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """The ``(type, options)`` recorded in ``directory``'s marker file."""
    path = Path(directory) / MARKER
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} does not hold a saved xmodalzoo tokenizer")
    try:
        data = json.loads(path.read_text())
        return str(data["type"]), dict(data.get("options", {}))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: expected a JSON object with a 'type' key ({exc})") from exc


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Reload a tokenizer saved with its ``save(directory)``, whatever its type."""
    type_, _ = read_marker(directory)
    if type_ == "word":
        from .vocab import WordTokenizer

        return WordTokenizer.load(directory)
    if type_ == "transformers":
        from .hf_text import TransformersTokenizer

        return TransformersTokenizer.load(directory)
    raise ValueError(f"{Path(directory) / MARKER}: unknown tokenizer type {type_!r}; known: word, transformers")
