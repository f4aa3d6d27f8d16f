"""COCO caption annotation files (``captions_<split>.json``): one annotation file and image folder per split.

Images keep the order of the file's ``images[]``; each image's captions keep the order of
``annotations[]``.  Image ids are the COCO image ids, caption ids the COCO annotation ids.  Images
without captions are dropped.
"""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from ..config import ComponentConfig
from ..errors import DataError
from .common import DatasetConfig, ImageFileDataset, require_file, require_split, resolve_root


class CocoSplitFiles(ComponentConfig):
    """Where one split lives, relative to the dataset root."""

    annotations: str = Field(description="COCO caption annotation JSON, e.g. annotations/captions_val2017.json")
    images: str = Field(description="folder holding the split's image files, e.g. images/val2017")


def _default_coco_splits() -> dict[str, CocoSplitFiles]:
    train = CocoSplitFiles(annotations="annotations/captions_train2017.json", images="images/train2017")
    val = CocoSplitFiles(annotations="annotations/captions_val2017.json", images="images/val2017")
    return {"train": train, "val": val, "test": val}


class CocoDatasetConfig(DatasetConfig):
    """COCO-format caption annotations; ``test`` defaults to val2017 (test2017 has no public captions)."""

    name: str | None = Field("coco", description="dataset name; subfolder of $XMODALZOO_DATA_ROOT when root is null")
    captions_per_image: int | None = Field(None, ge=1, description="keep only the first N captions of each image")
    splits: dict[Literal["train", "val", "test"], CocoSplitFiles] = Field(
        default_factory=_default_coco_splits, description="logical split -> its annotation file and image folder")


def build_coco(cfg: CocoDatasetConfig, *, split: str) -> ImageFileDataset:
    """COCO caption annotation JSON (images[], annotations[]) with its image folder."""
    files = require_split(cfg.splits, split, "coco")
    root = resolve_root(cfg.root, name=cfg.name, env_var="XMODALZOO_COCO_ROOT", loader="coco")
    path = require_file(root / files.annotations, "COCO annotation file", f"data.splits.{split}.annotations")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        images, annotations = data["images"], data["annotations"]
        by_image: dict[int, list[tuple[str, int]]] = {im["id"]: [] for im in images}
        for ann in annotations:
            if ann["image_id"] not in by_image:
                raise DataError(f"{path}: annotation {ann['id']} refers to image {ann['image_id']}, "
                                f"which is not in images[]")
            by_image[ann["image_id"]].append((ann["caption"].strip(), ann["id"]))
        file_names = [im["file_name"] for im in images]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO caption file (needs images[].id/file_name and "
                        f"annotations[].image_id/id/caption): {type(exc).__name__}: {exc}") from None
    ids = [im["id"] for im in images]
    keep = cfg.captions_per_image
    pairs = [by_image[i][:keep] for i in ids]
    return ImageFileDataset(
        name=cfg.name or "coco", split=split,
        paths=[root / files.images / f for f in file_names],
        image_ids=ids,
        captions=[[c for c, _ in p] for p in pairs],
        caption_ids=[[a for _, a in p] for p in pairs],
        on_error=cfg.on_error, source=str(path),
    )
