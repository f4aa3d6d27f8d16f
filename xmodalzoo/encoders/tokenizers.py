"""Tokenizers: the base class, and saving and reloading them through the registry.

A saved tokenizer folder holds the tokenizer's own files and a marker, ``xmodalzoo_tokenizer.json``
(not ``tokenizer_config.json``, which Hugging Face tokenizers write into the same folder):
``{"type": NAME, "options": {...}}``.  ``NAME`` is the tokenizer's entry in the registry (kind
``tokenizer``), whose factory reloads it as ``factory(cfg, *, directory)``, ``cfg`` being the options
validated against the entry's config class.  So a plugin's tokenizer reloads from a model folder
like the core's ``word`` and ``transformers`` tokenizers do.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypeVar

from ..data.batch import TextBatch
from ..errors import ModelFolderError, RegistryError
from ..registry import REGISTRY

MARKER = "xmodalzoo_tokenizer.json"
T = TypeVar("T", bound="Tokenizer")


class Tokenizer:
    """Base class: turns captions into a :class:`TextBatch`; saved with a model folder.

    Subclasses set :attr:`type` (the name they are registered under, kind ``tokenizer``) and
    implement ``__call__``, :meth:`options` (what the marker records: the fields of the registered
    config class) and :meth:`save_files` (their own files, e.g. a vocabulary).
    """

    #: the tokenizer's registered name, written into the marker
    type: ClassVar[str] = ""

    def __call__(self, texts: Sequence[str], train: bool = False) -> TextBatch:  # pragma: no cover - abstract
        """``ids`` (B, L) and ``mask`` (B, L) of ``texts``; ``train`` switches on augmentation."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The settings to save (JSON values), validated by the registered config class on reload."""
        return {}

    def save_files(self, directory: Path) -> None:
        """Write the tokenizer's own files into ``directory`` (which exists)."""

    def save(self, directory: str | Path) -> None:
        """Write the tokenizer's files and the marker into ``directory`` (created if needed)."""
        if not self.type:
            raise TypeError(f"{type(self).__name__} sets no tokenizer type: it cannot be saved and reloaded")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.save_files(path)
        (path / MARKER).write_text(json.dumps({"type": self.type, "options": self.options()}, indent=2))

    @classmethod
    def load(cls: type[T], directory: str | Path) -> T:
        """Reload a tokenizer of this class written by :meth:`save` (see :func:`load_tokenizer`)."""
        tokenizer = load_tokenizer(directory)
        if not isinstance(tokenizer, cls):
            raise ModelFolderError(f"{directory} holds a {tokenizer.type!r} tokenizer, not a {cls.__name__}")
        return tokenizer


def read_marker(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """The ``(type, options)`` recorded in ``directory``'s marker file."""
    path = Path(directory) / MARKER
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} does not hold a saved xmodalzoo tokenizer")
    try:
        data = json.loads(path.read_text())
        return str(data["type"]), dict(data.get("options", {}))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path}: expected a JSON object with a 'type' key ({exc})") from exc


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Reload the tokenizer saved in ``directory``, whatever its registered type."""
    type_, options = read_marker(directory)
    try:
        entry = REGISTRY.get("tokenizer", type_)
    except RegistryError:
        known = ", ".join(e.name for e in REGISTRY.list("tokenizer")) or "(none)"
        raise ModelFolderError(f"{Path(directory) / MARKER}: unknown tokenizer type {type_!r}; known: {known} "
                               "(is the plugin that registers it installed?)") from None
    try:
        cfg = entry.validate(options)
    except ValueError as exc:
        raise ModelFolderError(f"{Path(directory) / MARKER}: invalid {type_!r} tokenizer options: {exc}") from None
    return entry.factory(cfg, directory=Path(directory))  # type: ignore[no-any-return]
