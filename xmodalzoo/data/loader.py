"""The training data loader: caption batches from a sampler -> :class:`~xmodalzoo.data.batch.Batch`.

Each batch loads the distinct images of its captions once (in order of first appearance),
tokenises the captions with ``tokenizer(texts, train=True)`` and stacks the transformed images.

Unreadable images (decode errors at load time) never surface as a worker traceback: with
``on_error="raise"`` the loader raises a :class:`DataError` naming the file in the main process; with
``"skip"`` the image and its captions are dropped from that batch, counted in
``loader.skipped_images`` and logged (a batch left empty is skipped).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .base import RetrievalDataset
from .batch import Batch, TextBatch
from .common import DataError, OnError

log = logging.getLogger("xmodalzoo.data")


def check_compatible(dataset: RetrievalDataset, image_kind_expected: str | None) -> None:
    """Raise a :class:`DataError` when the dataset's ``image_kind`` is not what the image encoder takes.

    ``image_kind_expected`` is ``"pil"`` (image files) or ``"features"`` (precomputed regions); None
    skips the check.
    """
    if image_kind_expected is None or dataset.image_kind == image_kind_expected:
        return
    hint = {"features": "a dataset of precomputed region features (e.g. type: precomp)",
            "pil": "a dataset of image files (e.g. type: jsonl, karpathy or coco)"}.get(image_kind_expected, "")
    raise DataError(
        f"dataset {dataset.name or type(dataset).__name__}/{dataset.split} gives images of kind "
        f"{dataset.image_kind!r}, but the image encoder expects {image_kind_expected!r}: "
        f"use {hint or 'a matching dataset'} or an image encoder that takes {dataset.image_kind!r} inputs"
    )


class CaptionIndices(Dataset):
    """Item ``i`` is caption index ``i``: the collate does the loading, once per distinct image."""

    def __init__(self, num_captions: int) -> None:
        self.num_captions = num_captions

    def __len__(self) -> int:
        return self.num_captions

    def __getitem__(self, index: int) -> int:
        return int(index)


@dataclass
class CollatedBatch:
    """What a worker sends back: the batch (None if nothing was left), skipped files, or a fatal error."""

    batch: Batch | None
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def first_appearance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``values`` in order of first appearance, and each value's position among them."""
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return uniq[order], rank[inverse.reshape(-1)]


class TrainCollate:
    """Builds a :class:`Batch` from a list of caption indices (picklable, runs in the workers)."""

    def __init__(self, dataset: RetrievalDataset, image_transform: Callable[[Any], torch.Tensor],
                 tokenizer: Callable[..., TextBatch], on_error: OnError = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.dataset = dataset
        self.image_transform = image_transform
        self.tokenizer = tokenizer
        self.on_error = on_error

    def __call__(self, caption_indices: list[int]) -> CollatedBatch:
        captions = np.asarray(caption_indices, dtype=np.int64)
        images, caption_image = first_appearance(self.dataset.caption_to_image[captions])
        pixels, loaded, skipped = [], [], []
        for image in images.tolist():
            try:
                item = self.image_transform(self.dataset.load_image(image))
            except DataError as exc:
                if self.on_error == "raise":
                    return CollatedBatch(None, error=f"{exc} (set data.on_error: skip to drop unreadable images)")
                skipped.append(str(exc))
                continue
            pixels.append(item if isinstance(item, torch.Tensor) else torch.as_tensor(item))
            loaded.append(image)
        if not loaded:
            return CollatedBatch(None, skipped)
        kept_images = np.asarray(loaded, dtype=np.int64)
        if skipped:  # first-appearance order survives dropping images, so the rows still match
            captions = captions[np.isin(self.dataset.caption_to_image[captions], kept_images)]
            _, caption_image = first_appearance(self.dataset.caption_to_image[captions])
        texts = self.tokenizer([self.dataset.captions[c] for c in captions.tolist()], train=True)
        batch = Batch(
            images=torch.stack(pixels),
            texts=texts,
            image_index=torch.from_numpy(kept_images),
            caption_index=torch.from_numpy(captions),
            caption_image=torch.from_numpy(caption_image),
        )
        return CollatedBatch(batch, skipped)


class TrainLoader(DataLoader):
    """A :class:`DataLoader` yielding :class:`Batch` objects; counts images skipped as unreadable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped_images: list[str] = []

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        for out in super().__iter__():
            if out.error is not None:
                raise DataError(out.error)
            for reason in out.skipped:
                log.warning("skipped an unreadable image: %s", reason)
            self.skipped_images += out.skipped
            if out.batch is not None:
                yield out.batch


def build_train_loader(
    dataset: RetrievalDataset,
    sampler: Any,
    *,
    image_transform: Callable[[Any], torch.Tensor],
    tokenizer: Callable[..., TextBatch],
    num_workers: int = 0,
    on_error: OnError = "raise",
) -> TrainLoader:
    """A loader over the caption batches of ``sampler`` (anything iterable of caption-index lists)."""
    return TrainLoader(
        CaptionIndices(dataset.num_captions),
        batch_sampler=sampler,
        collate_fn=TrainCollate(dataset, image_transform, tokenizer, on_error),
        num_workers=num_workers,
    )
