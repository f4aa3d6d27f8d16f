"""The training data loader: caption batches from a sampler -> :class:`~xmodalzoo.data.batch.Batch`.

Each batch loads the distinct images of its captions once (in order of first appearance),
tokenises the captions with ``tokenizer(texts, train=True)`` and stacks the transformed images.

Unreadable images (decode errors at load time) never surface as a worker traceback: with
``on_error="raise"`` the loader raises a :class:`DataError` naming the file in the main process; with
``"skip"`` the image and its captions are dropped from that batch, counted in
``loader.skipped_images`` and logged (a batch left empty is skipped).  :func:`load_item` (in the
workers) and :func:`report_unreadable` (in the main process) are shared with evaluation's encoding.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .base import RetrievalDataset
from .batch import Batch, TextBatch
from .common import OnError

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


#: appended to the error of an unreadable image under ``on_error: raise``
SKIP_HINT = "(set data.on_error: skip to drop unreadable images)"


def check_on_error(on_error: str) -> OnError:
    """``on_error`` when it is ``"raise"`` or ``"skip"``; a ValueError otherwise."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error  # type: ignore[return-value]


def load_item(dataset: RetrievalDataset, transform: Callable[[Any], Any], index: int) -> torch.Tensor | str:
    """Image ``index`` of ``dataset`` through ``transform`` as a tensor, or the message of the
    :class:`DataError` it raised when it cannot be read (picklable: a worker hands it back)."""
    try:
        item = transform(dataset.load_image(index))
    except DataError as exc:
        return str(exc)
    return item if isinstance(item, torch.Tensor) else torch.as_tensor(item)


def report_unreadable(reasons: Sequence[str], on_error: OnError) -> None:
    """In the main process, the images :func:`load_item` could not read: with ``on_error="raise"`` a
    one-line :class:`DataError` for the first; with ``"skip"`` a warning for each."""
    if not reasons:
        return
    if on_error == "raise":
        raise DataError(f"{reasons[0]} {SKIP_HINT}")
    for reason in reasons:
        log.warning("skipped an unreadable image: %s", reason)


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
    """What a worker sends back: the batch (None if nothing was left) and the unreadable images' errors
    (under ``on_error="raise"`` only the first, and no batch)."""

    batch: Batch | None
    unreadable: list[str] = field(default_factory=list)


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
        self.dataset = dataset
        self.image_transform = image_transform
        self.tokenizer = tokenizer
        self.on_error = check_on_error(on_error)

    def __call__(self, caption_indices: list[int]) -> CollatedBatch:
        captions = np.asarray(caption_indices, dtype=np.int64)
        images, caption_image = first_appearance(self.dataset.caption_to_image[captions])
        pixels, loaded, skipped = [], [], []
        for image in images.tolist():
            item = load_item(self.dataset, self.image_transform, image)
            if isinstance(item, str):
                if self.on_error == "raise":  # the main process raises it (report_unreadable)
                    return CollatedBatch(None, [item])
                skipped.append(item)
                continue
            pixels.append(item)
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

    def __init__(self, *args: Any, on_error: OnError = "raise", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_error = check_on_error(on_error)
        self.skipped_images: list[str] = []

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        for out in super().__iter__():
            report_unreadable(out.unreadable, self.on_error)
            self.skipped_images += out.unreadable
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
    """A loader over the caption batches of ``sampler`` (anything iterable of caption-index lists);
    each worker process runs one intra-op thread (:func:`single_threaded_worker`)."""
    return TrainLoader(
        CaptionIndices(dataset.num_captions),
        batch_sampler=sampler,
        collate_fn=TrainCollate(dataset, image_transform, tokenizer, on_error),
        num_workers=num_workers,
        worker_init_fn=single_threaded_worker if num_workers else None,
        on_error=on_error,
    )


def single_threaded_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: one intra-op thread per worker process, so workers never
    compete with the trainer's threads for cores."""
    torch.set_num_threads(1)
