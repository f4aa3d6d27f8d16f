"""The files of a search index folder (the one owner of their names)."""
from __future__ import annotations

import os
from pathlib import Path

#: value of ``format`` in ``index.json``
FORMAT = "xmodalzoo-index/1"


class IndexLayout:
    """``index.json`` (written last: its presence means the index is complete), ``embeddings.safetensors``,
    ``unreadable.tsv`` (path, tab, reason per skipped image) and, while a build runs, ``shards/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def meta(self) -> Path:
        return self.root / "index.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.safetensors"

    @property
    def unreadable(self) -> Path:
        return self.root / "unreadable.tsv"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    def shard(self, number: int) -> Path:
        return self.shards / f"{number:05d}.safetensors"

    def __str__(self) -> str:
        return str(self.root)
