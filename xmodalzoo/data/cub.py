"""CUB-200-2011 birds with the captions of Reed et al. (10 per image), split by class (zero-shot).

Layout (the public CUB-200-2011 archive and Reed et al.'s ``cvpr2016_cub`` captions, side by side)::

    <root>/CUB_200_2011/images/<class>/<image>.jpg      e.g. 001.Black_footed_Albatross/..._0001_796111.jpg
    <root>/text_c10/<class>/<image>.txt                 one caption per line
    <root>/trainclasses1.txt, valclasses1.txt, testclasses.txt   class folder names, one per line

The class lists are those of the PCME split (100 train, 50 val, 50 test classes; the test classes are
never seen in training).  Matches are class-level, as in PCME's CUB protocol: a caption matches every
image of its class, so ``positives`` is exhaustive and R-Precision / mAP@R use it; ``caption_classes``
feeds the ``class_balanced`` sampler (one caption per class in a batch, so that a batch has no false
negatives).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from ..errors import DataError
from .common import DatasetConfig, ImageFileDataset, LogicalSplit, log, require_file, resolve_root

CUB_ROOT_ENV = "XMODALZOO_CUB_ROOT"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class CubDatasetConfig(DatasetConfig):
    """CUB-200-2011 images + Reed et al. captions, with class-level matches."""

    name: str | None = Field("cub", description="dataset name; subfolder of $XMODALZOO_DATA_ROOT when root is null")
    images_dir: str = Field("CUB_200_2011/images", description="folder of <class>/<image> files, relative to the root")
    text_dir: str = Field("text_c10", description="folder of <class>/<image>.txt caption files, relative to the root")
    class_splits: dict[LogicalSplit, str] = Field(
        default_factory=lambda: {"train": "trainclasses1.txt", "val": "valclasses1.txt", "test": "testclasses.txt"},
        description="logical split -> file (relative to the root) listing its class folder names, one per line",
    )
    captions_per_image: int | None = Field(
        10, ge=1, description="keep the first N captions of each image (null: all lines of its file)"
    )


def read_class_list(path: Path) -> list[str]:
    """Class folder names of a split file (blank lines ignored, duplicates an error)."""
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"class list {path} is empty")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"class list {path} names class {name!r} twice")
        seen.add(name)
    return names


def read_captions(path: Path, limit: int | None) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[:limit] if limit else lines


class CubDataset(ImageFileDataset):
    """An :class:`ImageFileDataset` with a class per image and class-level positives.

    ``positives`` (captions × images, bool) is built on first use only: training reads batch
    positives and ``caption_classes``, and the train split's full matrix would be about 350 MB.
    """

    def __init__(self, *, image_classes: list[int], class_names: list[str], **kwargs: Any) -> None:
        paths = kwargs["paths"]
        super().__init__(**kwargs)
        # ImageFileDataset may have dropped missing files: look the survivors' classes up by path
        class_of_path = {str(p): c for p, c in zip(paths, image_classes)}
        self.class_names = class_names
        self.image_classes = np.array([class_of_path[str(p)] for p in self.paths], dtype=np.int64)
        self.caption_classes = self.image_classes[self.caption_to_image]
        self._positives: torch.Tensor | None = None

    @property  # type: ignore[override]
    def positives(self) -> torch.Tensor:
        """(num_captions, num_images) torch.bool: caption c and image i show the same class."""
        if self._positives is None:
            cap = torch.from_numpy(np.asarray(self.caption_classes, dtype=np.int64))
            self._positives = cap[:, None] == torch.from_numpy(self.image_classes)[None, :]
        return self._positives

    @positives.setter
    def positives(self, value: torch.Tensor | None) -> None:  # drop_images assigns the subset
        self._positives = value

    def _select_images(self, keep: np.ndarray) -> None:
        super()._select_images(keep)
        self.image_classes = self.image_classes[keep]


def build_cub(cfg: CubDatasetConfig, *, split: str) -> CubDataset:
    """CUB-200-2011 + Reed et al. captions (10 per image), split by class; matches are class-level."""
    if split not in cfg.class_splits:
        raise DataError(f"split {split!r} is not configured for the 'cub' dataset; add it to data.class_splits "
                        f"(configured: {', '.join(cfg.class_splits) or 'none'})")
    root = resolve_root(cfg.root, name=cfg.name, env_var=CUB_ROOT_ENV, loader="cub")
    class_file = require_file(root / cfg.class_splits[split], f"class list of the {split!r} split",  # type: ignore[index]
                              "data.class_splits and data.root")
    image_root, text_root = root / cfg.images_dir, root / cfg.text_dir
    for folder, setting in ((image_root, "data.images_dir"), (text_root, "data.text_dir")):
        if not folder.is_dir():
            raise DataError(f"CUB folder {folder} does not exist; check {setting} and data.root")
    classes = read_class_list(class_file)
    paths: list[Path] = []
    captions: list[list[str]] = []
    image_classes: list[int] = []
    without_text: list[str] = []
    for c, name in enumerate(classes):
        folder = image_root / name
        if not folder.is_dir():
            raise DataError(f"class {name!r} listed in {class_file} has no image folder {folder}")
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            text = text_root / name / f"{image.stem}.txt"
            caps = read_captions(text, cfg.captions_per_image) if text.is_file() else []
            if not caps:
                without_text.append(str(text))
                continue
            paths.append(image)
            captions.append(caps)
            image_classes.append(c)
    if without_text:
        if cfg.on_error == "raise":
            raise DataError(f"{len(without_text)} CUB image(s) have no caption file or an empty one, e.g. "
                            f"{without_text[0]}; fix data.text_dir or set data.on_error: skip to drop them")
        log.warning("cub/%s: skipping %d image(s) without captions, e.g. %s", split, len(without_text), without_text[0])
    return CubDataset(
        name=cfg.name or "cub", split=split, paths=paths,
        image_ids=[f"{p.parent.name}/{p.name}" for p in paths], captions=captions,
        on_error=cfg.on_error, source=str(class_file), image_classes=image_classes, class_names=classes,
    )
