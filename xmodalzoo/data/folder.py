"""Image folder + captions JSONL: one JSON object per image, e.g. the shared flickr8k and coco_mini copies.

Each line: ``{"image": "images/<file>.jpg", "captions": [...], "split": "train|val|test",
"image_id": ..., "caption_ids": [...]}``; ``image`` is relative to the dataset root, ``image_id``
defaults to ``image`` and ``caption_ids`` to ``"<image_id>#<j>"``.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from ..errors import DataError
from .common import ImageFileDataset, SplitListConfig, require_file, require_split, resolve_root


class JsonlDatasetConfig(SplitListConfig):
    """An image folder with a captions JSONL file at its root."""

    captions_file: str = Field("captions.jsonl", description="the JSONL file, relative to the root")


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    """The objects of a JSONL file (blank lines ignored); a bad line is a :class:`DataError` naming it."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
            for key in ("image", "captions", "split"):
                if key not in row:
                    raise DataError(f"{path}:{lineno}: missing key {key!r} (each line needs image, captions, split)")
            if not isinstance(row["captions"], list):
                raise DataError(f"{path}:{lineno}: 'captions' must be a list of strings")
            if "caption_ids" in row and len(row["caption_ids"]) != len(row["captions"]):
                raise DataError(f"{path}:{lineno}: 'caption_ids' and 'captions' differ in length")
            rows.append(row)
    return rows


def build_jsonl(cfg: JsonlDatasetConfig, *, split: str) -> ImageFileDataset:
    """Image folder + captions JSONL (one object per image with image, captions, split)."""
    names = require_split(cfg.splits, split, "jsonl")
    root = resolve_root(cfg.root, name=cfg.name, env_var=None, loader="jsonl")
    path = require_file(root / cfg.captions_file, "captions file", "data.captions_file and data.root")
    rows = read_jsonl(path)
    chosen = [r for r in rows if r["split"] in names]
    if not chosen:
        present = sorted({str(r["split"]) for r in rows})
        raise DataError(f"{path} has no images in split(s) {names} (for {split!r}); "
                        f"splits present: {', '.join(present)}; fix data.splits")
    has_ids = all("caption_ids" in r for r in chosen)
    return ImageFileDataset(
        name=cfg.name or root.name,
        split=split,
        paths=[root / r["image"] for r in chosen],
        image_ids=[r.get("image_id", r["image"]) for r in chosen],
        captions=[[str(c) for c in r["captions"]] for r in chosen],
        caption_ids=[list(r["caption_ids"]) for r in chosen] if has_ids else None,
        on_error=cfg.on_error,
        source=str(path),
    )
