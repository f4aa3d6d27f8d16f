"""SCAN-style precomputed region features: ``<split>_ims.npy`` (rows, regions, dim) + ``<split>_caps.txt``.

Caption ``c`` belongs to image ``c // ratio`` where ``ratio`` = captions / images (it must be an
integer).  Some releases store every image once per caption; set ``rows_per_image`` (e.g. 5) and
only every ``rows_per_image``-th row is used.  The arrays are memory-mapped, never read whole.
Several file splits (e.g. ``[train, restval]``) are concatenated in order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..errors import DataError
from .base import RetrievalDataset
from .common import SplitListConfig, require_file, require_split, resolve_root


class PrecompDatasetConfig(SplitListConfig):
    """Region features and captions as released with SCAN / VSE++ (``coco_precomp``, ``f30k_precomp``)."""

    name: str | None = Field("coco_precomp", description="dataset name; subfolder of $XMODALZOO_DATA_ROOT when root is null")
    rows_per_image: int = Field(1, ge=1, description="rows of the .npy per image (5 when each image is repeated per caption)")
    splits: dict[Literal["train", "val", "test"], list[str]] = Field(
        default_factory=lambda: {"train": ["train"], "val": ["dev"], "test": ["test"]},
        description="logical split -> file prefixes (<prefix>_ims.npy, <prefix>_caps.txt); COCO 5K test: testall",
    )


class _PrecompPart:
    """One file split: its memory-mapped feature rows and where its images start."""

    def __init__(self, path: Path, rows_per_image: int) -> None:
        self.path = path
        self.rows_per_image = rows_per_image
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:  # opened lazily, also after unpickling in a worker
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "rows_per_image": self.rows_per_image, "_array": None}


class PrecompDataset(RetrievalDataset):
    """Precomputed region features: ``load_image(i)`` is a float32 (regions, dim) array."""

    image_kind = "features"

    def __init__(self, cfg: PrecompDatasetConfig, root: Path, split: str, prefixes: list[str]) -> None:
        self.name, self.split = cfg.name or root.name, split
        self.on_error = cfg.on_error
        self._rows: np.ndarray | None = None  # dataset index -> feature row index, once images were dropped
        self.parts: list[_PrecompPart] = []
        starts, image_ids, caption_ids, captions, c2i = [0], [], [], [], []
        for prefix in prefixes:
            part = _PrecompPart(require_file(root / f"{prefix}_ims.npy", "region feature file", "data.root and data.splits"),
                                cfg.rows_per_image)
            caps_path = require_file(root / f"{prefix}_caps.txt", "caption file", "data.root and data.splits")
            with open(caps_path, encoding="utf-8") as fh:
                lines = [line.rstrip("\n").strip() for line in fh]
            while lines and not lines[-1]:
                lines.pop()
            n_images = self._count_images(part, cfg.rows_per_image)
            if n_images == 0 or len(lines) % n_images:
                raise DataError(
                    f"{caps_path} has {len(lines)} captions but {part.path} holds {n_images} images "
                    f"({part.array.shape[0]} rows / rows_per_image={cfg.rows_per_image}): captions per image "
                    f"must be a whole number; check data.rows_per_image"
                )
            ratio = len(lines) // n_images
            offset = starts[-1]
            self.parts.append(part)
            starts.append(offset + n_images)
            image_ids += [f"{prefix}/{i}" for i in range(n_images)]
            caption_ids += [f"{prefix}/{c}" for c in range(len(lines))]
            captions += lines
            c2i.append(offset + np.arange(len(lines), dtype=np.int64) // ratio)
        self.part_starts = np.array(starts, dtype=np.int64)
        self.image_ids, self.caption_ids, self.captions = image_ids, caption_ids, captions
        self.caption_to_image = np.concatenate(c2i)

    @staticmethod
    def _count_images(part: _PrecompPart, rows_per_image: int) -> int:
        arr = part.array
        if arr.ndim != 3:
            raise DataError(f"{part.path}: expected an array of shape (images, regions, dim), got shape {arr.shape}")
        if arr.shape[0] % rows_per_image:
            raise DataError(f"{part.path}: {arr.shape[0]} rows is not a multiple of rows_per_image={rows_per_image}")
        return arr.shape[0] // rows_per_image

    def load_image(self, index: int) -> np.ndarray:
        """Region features of image ``index``: a float32 (regions, dim) array (a copy)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"image index {index} out of range for {self.num_images} images")
        if self._rows is not None:
            index = int(self._rows[index])
        p = int(np.searchsorted(self.part_starts, index, side="right")) - 1
        part = self.parts[p]
        row = (index - int(self.part_starts[p])) * part.rows_per_image
        try:
            return np.array(part.array[row], dtype=np.float32)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read row {row} of {part.path}: {exc}") from None


    def _select_images(self, keep: np.ndarray) -> None:
        self._rows = keep if self._rows is None else self._rows[keep]


def build_precomp(cfg: PrecompDatasetConfig, *, split: str) -> PrecompDataset:
    """SCAN precomputed region features (<split>_ims.npy) with captions (<split>_caps.txt)."""
    prefixes = require_split(cfg.splits, split, "precomp")
    root = resolve_root(cfg.root, name=cfg.name, env_var="XMODALZOO_PRECOMP_ROOT", loader="precomp")
    return PrecompDataset(cfg, root, split, prefixes)
