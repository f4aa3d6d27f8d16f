"""The built-in "shapes" benchmark: procedurally generated scenes with deliberately ambiguous captions.

Every image shows 1–4 coloured shapes in a 3 × 3 grid; each of its captions names some of the
objects by some of their attributes, so one image has many valid captions and a short caption
("something yellow") fits many images.  The exact caption × image ground truth is computed from
the scene descriptions (see :mod:`xmodalzoo.data.shapes_match`).

Generated splits are cached under the user cache directory (``$XMODALZOO_CACHE``, else
``$XDG_CACHE_HOME/xmodalzoo``, else ``~/.cache/xmodalzoo``) keyed by every generation parameter.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from ..config import ComponentConfig
from ..files import atomic_open
from .base import RetrievalDataset
from .shapes_captions import caption_texts, sample_caption_specs
from .shapes_match import SLOTS, PositiveMatcher
from .shapes_scenes import ATTRIBUTES, COLOUR, COLOURS, SHAPE, SHAPES, count_objects, render_scenes, sample_scenes

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: bump when the generator changes what it draws or writes, so stale caches are not reused
GENERATOR_VERSION = 1
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}


class ShapesConfig(ComponentConfig):
    """Options of the procedurally generated shapes benchmark."""

    image_size: int = Field(64, ge=24, le=512, description="side of the square RGB images, in pixels")
    train_size: int = Field(10000, ge=1, description="number of images in the train split")
    val_size: int = Field(1000, ge=1, description="number of images in the val split")
    test_size: int = Field(1000, ge=1, description="number of images in the test split")
    captions_per_image: int = Field(5, ge=1, description="captions generated per image")
    max_objects: int = Field(4, ge=1, le=SLOTS, description="most objects in one image (1..4)")
    seed: int = Field(0, ge=0, description="base seed; each split derives its own stream from it")
    cache: bool = Field(True, description="cache generated splits on disk under the user cache directory")


def user_cache_dir() -> Path:
    """``$XMODALZOO_CACHE``, else ``$XDG_CACHE_HOME/xmodalzoo``, else ``~/.cache/xmodalzoo``."""
    if os.environ.get("XMODALZOO_CACHE"):
        return Path(os.environ["XMODALZOO_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "xmodalzoo"
    return Path.home() / ".cache" / "xmodalzoo"


def split_size(cfg: ShapesConfig, split: str) -> int:
    """Number of images of ``split``; unknown splits raise ValueError naming the valid ones."""
    if split not in SPLITS:
        raise ValueError(f"unknown shapes split {split!r}; valid splits are: {', '.join(SPLITS)}")
    return int(getattr(cfg, f"{split}_size"))


def generation_key(cfg: ShapesConfig, split: str) -> str:
    """Hash of every parameter that changes the generated ``split``."""
    params = {
        "version": GENERATOR_VERSION, "split": split, "num_images": split_size(cfg, split),
        "image_size": cfg.image_size, "captions_per_image": cfg.captions_per_image,
        "max_objects": cfg.max_objects, "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def generate_split(cfg: ShapesConfig, split: str) -> dict[str, np.ndarray]:
    """Generate one split's arrays: images, objects, captions and their structured descriptions."""
    num_images = split_size(cfg, split)
    rng = np.random.default_rng([cfg.seed, _SPLIT_STREAM[split]])
    scene_rng, render_rng, caption_rng, text_rng = rng.spawn(4)
    objects = sample_scenes(num_images, cfg.max_objects, scene_rng)
    images = render_scenes(objects, cfg.image_size, render_rng)
    specs = sample_caption_specs(objects, cfg.captions_per_image, caption_rng)
    texts = caption_texts(specs, text_rng)
    return {
        "images": images,
        "objects": objects,
        "captions": np.array(texts, dtype=np.str_),
        "caption_attributes": specs.attributes,
        "caption_object_index": specs.object_index,
        "caption_num_objects": specs.num_objects,
    }


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:  # a truncated or foreign file: regenerate
        warnings.warn(f"ignoring unreadable shapes cache file {path}: {exc}", stacklevel=3)
        return None


class ShapesDataset(RetrievalDataset):
    """One split of the shapes benchmark.

    Beyond the :class:`RetrievalDataset` fields it keeps the scene structure for analysis:

    * ``images``: (N, S, S, 3) uint8; ``objects``: (N, M, 5) int8 attribute codes in the order of
      :data:`ATTRIBUTES` (-1 for absent slots); ``num_objects``: (N,) objects per image;
    * ``caption_attributes``: (C, M, 5) int8, each mentioned object's named attributes (-1 = not
      named); ``caption_object_index``: (C, M) which object of its image each one describes;
      ``caption_num_objects`` / ``caption_num_attributes``: (C,) how many objects / attributes a
      caption names.

    ``positives`` is the exact (C, N) match matrix (computed on first use, and cached on disk when
    caching is on).  ``image_labels`` (N, 36) bool marks every (shape, colour) pair present in the
    image, bit ``shape * 6 + colour``; ``caption_labels`` are the labels *of the caption's own
    image* (the PCME PMRP convention: captions inherit their image's object classes), not of the
    objects the caption mentions.
    """

    name = "shapes"
    image_kind = "pil"

    def __init__(self, arrays: dict[str, np.ndarray], split: str, positives_path: Path | None = None) -> None:
        self.split = split
        self.images = arrays["images"]
        self.objects = arrays["objects"]
        self.captions = [str(c) for c in arrays["captions"]]
        self.caption_attributes = arrays["caption_attributes"]
        self.caption_object_index = arrays["caption_object_index"]
        self.caption_num_objects = arrays["caption_num_objects"].astype(np.int64)
        self.num_objects = count_objects(self.objects)
        self.caption_num_attributes = (self.caption_attributes >= 0).sum(axis=(1, 2)).astype(np.int64)
        per_image = len(self.captions) // max(len(self.images), 1)
        self.caption_to_image = np.repeat(np.arange(len(self.images), dtype=np.int64), per_image)
        self.image_ids = list(range(len(self.images)))
        self.caption_ids = list(range(len(self.captions)))
        self.image_labels = torch.from_numpy(object_class_labels(self.objects))
        self.caption_labels = self.image_labels[torch.from_numpy(self.caption_to_image)]
        self._positives_path = positives_path
        self._positives: torch.Tensor | None = None
        self._matcher: PositiveMatcher | None = None

    @property
    def matcher(self) -> PositiveMatcher:
        """Exact matcher for any caption × image block (see :meth:`positive_block`)."""
        if self._matcher is None:
            self._matcher = PositiveMatcher(self.objects, self.caption_attributes, self.caption_num_objects)
        return self._matcher

    @property  # type: ignore[override]
    def positives(self) -> torch.Tensor:
        """(num_captions, num_images) torch.bool: caption c truly describes image i."""
        if self._positives is None:
            self._positives = self._load_or_compute_positives()
        return self._positives

    def positive_block(self, captions: Any, images: Any) -> torch.Tensor:
        """Exact matches between some captions and some images (index arrays or slices), as bool."""

        def index(ix: Any) -> Any:
            return ix if isinstance(ix, slice) else np.asarray(ix, dtype=np.int64)

        return torch.from_numpy(self.matcher.block(index(captions), index(images)))

    def _load_or_compute_positives(self) -> torch.Tensor:
        shape = (self.num_captions, self.num_images)
        path = self._positives_path
        if path is not None and path.exists():
            packed = np.load(path, allow_pickle=False)
            if packed.shape == (shape[0], (shape[1] + 7) // 8):
                return torch.from_numpy(np.unpackbits(packed, axis=1, count=shape[1]).astype(bool))
        positives = self.matcher.matrix()
        if path is not None:
            with atomic_open(path, "wb") as fh:
                np.save(fh, np.packbits(positives.numpy(), axis=1))
        return positives

    def load_image(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL RGB image."""
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"image index {index} out of range for {self.num_images} images")
        return Image.fromarray(np.ascontiguousarray(self.images[index]))


def object_class_labels(objects: np.ndarray) -> np.ndarray:
    """(N, n_shapes * n_colours) bool: bit ``shape * n_colours + colour`` set when present."""
    n = objects.shape[0]
    labels = np.zeros((n, len(SHAPES) * len(COLOURS)), dtype=bool)
    present = objects[..., SHAPE] >= 0
    image = np.broadcast_to(np.arange(n)[:, None], present.shape)
    cls = objects[..., SHAPE].astype(np.int64) * len(COLOURS) + objects[..., COLOUR]
    labels[image[present], cls[present]] = True
    return labels


def load_split(cfg: ShapesConfig, split: str) -> ShapesDataset:
    """The ``split`` of the benchmark described by ``cfg``, from the cache when possible."""
    split_size(cfg, split)  # validates the split name
    if not cfg.cache:
        return ShapesDataset(generate_split(cfg, split), split)
    base = user_cache_dir() / "shapes" / f"shapes-{split}-{generation_key(cfg, split)}"
    path = base.with_suffix(".npz")
    arrays = _load(path)
    if arrays is None:
        arrays = generate_split(cfg, split)
        _save_atomic(path, arrays)
    return ShapesDataset(arrays, split, positives_path=Path(str(base) + "-positives.npy"))


def build_shapes(cfg: ShapesConfig, *, split: str) -> ShapesDataset:
    """Procedurally generated shapes benchmark with exact many-to-many ground truth."""
    return load_split(cfg, split)


def register(r: Any) -> None:
    """Register the ``shapes`` dataset."""
    r.add("dataset", "shapes", build_shapes, ShapesConfig)


__all__ = [
    "ATTRIBUTES", "SPLITS", "ShapesConfig", "ShapesDataset", "build_shapes", "generate_split",
    "generation_key", "load_split", "object_class_labels", "register", "user_cache_dir",
]
