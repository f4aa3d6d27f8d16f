"""Karpathy split files (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``).

``images[]`` entries have ``filename``, optional ``filepath`` (COCO: ``train2014`` / ``val2014``),
``split`` (train / restval / val / test), ``sentences[].raw``, ``sentids`` and ``imgid`` / ``cocoid``.
Image files are read from ``<root>/<image_dir>/<filepath>/<filename>``.  Image ids are the COCO ids
when present (``cocoid``), else ``imgid``; caption ids are the Karpathy ``sentid``.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ..errors import DataError
from .common import ImageFileDataset, SplitListConfig, require_file, require_split, resolve_root


class KarpathyDatasetConfig(SplitListConfig):
    """A Karpathy split JSON file and the image folder it refers to."""

    flavour: Literal["coco", "flickr30k", "flickr8k"] = Field(
        "coco", description="which file: dataset_<flavour>.json; also the default name and env var XMODALZOO_<FLAVOUR>_ROOT")
    annotation: str | None = Field(None, description="the JSON file relative to the root; null: dataset_<flavour>.json")
    image_dir: str = Field("", description="folder under the root that holds <filepath>/<filename>")
    captions_per_image: int | None = Field(None, ge=1, description="keep only the first N captions of each image (5 for the usual protocol)")
    splits: dict[Literal["train", "val", "test"], list[str]] = Field(
        default_factory=lambda: {"train": ["train", "restval"], "val": ["val"], "test": ["test"]},
        description="logical split -> Karpathy split names (train uses train + restval by default)",
    )


def build_karpathy(cfg: KarpathyDatasetConfig, *, split: str) -> ImageFileDataset:
    """Karpathy split JSON (COCO / Flickr30k / Flickr8k) with its image folder."""
    names = require_split(cfg.splits, split, "karpathy")
    name = cfg.name or cfg.flavour
    root = resolve_root(cfg.root, name=name, env_var=f"XMODALZOO_{cfg.flavour.upper()}_ROOT", loader="karpathy")
    path = require_file(root / (cfg.annotation or f"dataset_{cfg.flavour}.json"),
                        "Karpathy split file", "data.annotation and data.root")
    try:
        with open(path, encoding="utf-8") as fh:
            images = json.load(fh)["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a Karpathy split file (expected a JSON object with 'images'): {exc}") from None
    chosen = [im for im in images if im.get("split") in names]
    if not chosen:
        present = sorted({str(im.get("split")) for im in images})
        raise DataError(f"{path} has no images in split(s) {names} (for {split!r}); "
                        f"splits present: {', '.join(present)}; fix data.splits")
    keep = cfg.captions_per_image
    image_dir = root / cfg.image_dir
    try:
        paths = [image_dir / im.get("filepath", "") / im["filename"] for im in chosen]
        captions = [[s["raw"] for s in im["sentences"]][:keep] for im in chosen]
        caption_ids = [_sentence_ids(im)[:keep] for im in chosen]
        image_ids = [im.get("cocoid", im.get("imgid", im["filename"])) for im in chosen]
    except KeyError as exc:
        raise DataError(f"{path}: an image entry lacks the key {exc.args[0]!r}") from None
    return ImageFileDataset(
        name=name, split=split, paths=paths, image_ids=image_ids, captions=captions,
        caption_ids=caption_ids, on_error=cfg.on_error, source=str(path),
    )


def _sentence_ids(image: dict[str, Any]) -> list[Any]:
    sentences = image["sentences"]
    if all("sentid" in s for s in sentences):
        return [s["sentid"] for s in sentences]
    ids = image.get("sentids")
    if ids is not None and len(ids) == len(sentences):
        return list(ids)
    base = image.get("cocoid", image.get("imgid", image["filename"]))
    return [f"{base}#{j}" for j in range(len(sentences))]
