"""Evaluation protocols: which images and captions form each evaluation fold.

* ``full``: the whole split, one fold;
* ``coco1k``: folds of 1,000 consecutive images (images ``f*1000:(f+1)*1000``) with their captions,
  as many as fit (5 on the COCO 5K test split); the metrics are averaged over the folds;
* ``coco5k``: the first 5,000 images with their captions (the whole COCO test split), one fold.

Captions of a fold are the captions of its images, in file order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import ProtocolError

PROTOCOLS = ("full", "coco1k", "coco5k")
COCO_1K_FOLD_IMAGES = 1000
COCO_5K_IMAGES = 5000


def required_images(protocol: str, *, fold_size: int = COCO_1K_FOLD_IMAGES, coco5k_images: int = COCO_5K_IMAGES) -> int:
    """The fewest images a split needs for ``protocol`` (1 for ``full``)."""
    needs = {"full": 1, "coco1k": fold_size, "coco5k": coco5k_images}
    if protocol not in needs:
        raise ProtocolError(f"unknown evaluation protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return needs[protocol]


def check_protocols(protocols: Iterable[str], num_images: int, split: str | None = None, *,
                    fold_size: int = COCO_1K_FOLD_IMAGES, coco5k_images: int = COCO_5K_IMAGES) -> None:
    """Raise a one-line :class:`ProtocolError` when a split of ``num_images`` images cannot serve a protocol."""
    where = f"the {split} split" if split else "this split"
    for protocol in protocols:
        need = required_images(protocol, fold_size=fold_size, coco5k_images=coco5k_images)
        if num_images >= need:
            continue
        if protocol == "full":
            raise ProtocolError(f"{where} has no images to evaluate")
        what = f"folds of {fold_size}" if protocol == "coco1k" else "the COCO 5K test split"
        raise ProtocolError(
            f"protocol {protocol} needs at least {need} images ({what}); {where} has {num_images}: fix "
            f"eval.protocols or the dataset's {split or 'test'} split (for SCAN precomputed features the "
            f"COCO 5K images are the 'testall' files: data.splits.test: [testall])"
        )


@dataclass(frozen=True)
class Fold:
    """One evaluation fold: dataset indices of its images and of their captions (both sorted)."""

    image_index: np.ndarray
    caption_index: np.ndarray

    @property
    def num_images(self) -> int:
        return int(len(self.image_index))

    @property
    def num_captions(self) -> int:
        return int(len(self.caption_index))


def check_caption_to_image(caption_to_image: np.ndarray, num_images: int) -> np.ndarray:
    """``caption_to_image`` as a 1-d int64 array with values in ``[0, num_images)``; raises otherwise."""
    c2i = np.asarray(caption_to_image)
    if c2i.ndim != 1 or (c2i.size and not np.issubdtype(c2i.dtype, np.integer)):
        raise ValueError(f"caption_to_image must be a 1-d integer array, got shape {c2i.shape} dtype {c2i.dtype}")
    c2i = c2i.astype(np.int64)
    if c2i.size and (c2i.min() < 0 or c2i.max() >= num_images):
        raise ValueError(
            f"caption_to_image values must lie in [0, {num_images}) (the number of images), "
            f"got [{c2i.min()}, {c2i.max()}]"
        )
    return c2i


def image_range_fold(start: int, stop: int, caption_to_image: np.ndarray) -> Fold:
    """The fold of images ``start:stop`` and every caption of those images."""
    c2i = np.asarray(caption_to_image)
    captions = np.flatnonzero((c2i >= start) & (c2i < stop)).astype(np.int64)
    return Fold(np.arange(start, stop, dtype=np.int64), captions)


def protocol_folds(
    protocol: str,
    caption_to_image: np.ndarray,
    num_images: int,
    *,
    fold_size: int = COCO_1K_FOLD_IMAGES,
    coco5k_images: int = COCO_5K_IMAGES,
) -> list[Fold]:
    """The folds of ``protocol`` for a split with ``num_images`` images.

    ``fold_size`` (1,000) and ``coco5k_images`` (5,000) are parameters only so tests can shrink them.
    """
    c2i = check_caption_to_image(caption_to_image, num_images)
    required_images(protocol)  # unknown protocol -> ProtocolError
    if protocol == "full":
        return [image_range_fold(0, num_images, c2i)]
    check_protocols([protocol], num_images, fold_size=fold_size, coco5k_images=coco5k_images)
    if protocol == "coco1k":
        return [image_range_fold(f * fold_size, (f + 1) * fold_size, c2i) for f in range(num_images // fold_size)]
    return [image_range_fold(0, coco5k_images, c2i)]


__all__ = ["PROTOCOLS", "COCO_1K_FOLD_IMAGES", "COCO_5K_IMAGES", "Fold", "ProtocolError", "check_caption_to_image",
           "check_protocols", "image_range_fold", "protocol_folds", "required_images"]
