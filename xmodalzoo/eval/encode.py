"""Encode every image of a split once and every caption once, in batches, on one device.

Unreadable images never surface as a worker traceback: each worker catches the
:class:`~xmodalzoo.errors.DataError` of an image and hands it to the main process (with the
training loader's :func:`~xmodalzoo.data.loader.load_item` and
:func:`~xmodalzoo.data.loader.report_unreadable`).  There, the dataset's ``on_error`` decides: ``raise`` fails with one line
naming the file; ``skip`` drops the image **and its captions** from the dataset in place
(:meth:`~xmodalzoo.data.base.RetrievalDataset.drop_images`, so ``caption_to_image``, positives and
labels stay consistent for the evaluation that follows), counts them in
``dataset.skipped_images`` and logs a warning.  Captions are encoded after images, so they follow.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import RetrievalDataset
from ..data.loader import check_on_error, load_item, report_unreadable
from ..devices import module_device, resolve_device
from ..embeddings import Embedding
from ..errors import DataError

log = logging.getLogger("xmodalzoo.data")


class ImageItems(Dataset):
    """Image ``i`` of a dataset, loaded once and passed through ``transform``."""

    def __init__(self, dataset: RetrievalDataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return self.dataset.num_images

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.dataset.load_image(index))


class SafeImageItems(ImageItems):
    """Like :class:`ImageItems`, but item ``i`` is ``(i, tensor)`` or ``(i, error message)``."""

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | str]:  # type: ignore[override]
        return index, load_item(self.dataset, self.transform, index)


class ImageBatch:
    """A batch of :class:`SafeImageItems`: the readable images stacked, the errors aside (picklable)."""

    def __init__(self, items: list[tuple[int, torch.Tensor | str]]) -> None:
        ok = [(i, x) for i, x in items if isinstance(x, torch.Tensor)]
        self.index = [i for i, _ in ok]
        self.pixels = torch.stack([x for _, x in ok]) if ok else None
        self.errors = [(i, x) for i, x in items if not isinstance(x, torch.Tensor)]

    def __len__(self) -> int:
        return len(self.index) + len(self.errors)

    def pin_memory(self) -> "ImageBatch":
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


class CaptionItems(Dataset):
    """Caption ``i`` of a dataset, as raw text (tokenised per batch)."""

    def __init__(self, dataset: RetrievalDataset) -> None:
        self.captions = dataset.captions

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> str:
        return self.captions[index]


def _as_list(batch: list[str]) -> list[str]:
    return list(batch)


@torch.no_grad()
def _encode(
    method: nn.Module,
    batches: Iterable[Any],
    encode: Callable[[Any], Embedding | None],
    sizes: Callable[[Any], int],
    total: int,
    label: str,
    progress: bool,
) -> Embedding:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if total == 0:
        raise ValueError(f"nothing to encode: the dataset has no {label}")
    was_training = method.training
    method.eval()
    parts: list[Embedding] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, transient=True, disable=not progress) as bar:
            task = bar.add_task(f"encoding {label}", total=total)
            for batch in batches:
                emb = encode(batch)
                if emb is not None:
                    parts.append(emb.detach().to("cpu"))
                bar.advance(task, sizes(batch))
    finally:
        method.train(was_training)
    if not parts:
        raise DataError(f"no {label} could be encoded")
    return type(parts[0]).cat(parts)


def _prepare(method: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        return module_device(method)
    device = resolve_device(device)
    method.to(device)
    return device


def encode_images(
    method: nn.Module,
    dataset: RetrievalDataset,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    *,
    progress: bool = True,
    on_error: str | None = None,
) -> Embedding:
    """Embeddings (on the CPU, in dataset order) of every image, each loaded and encoded once.

    Uses ``method.image_transform(False)`` and ``method.encode_image`` in eval mode without
    gradients.  ``device`` None keeps the method where it is; otherwise the method is moved there.
    An unreadable image raises a one-line :class:`DataError` naming the file, or with ``on_error``
    (default: ``dataset.on_error``) ``"skip"`` is dropped from ``dataset`` with its captions (see
    the module docstring); the embeddings then cover the images left.
    """
    on_error = check_on_error(on_error or getattr(dataset, "on_error", "raise"))
    device = _prepare(method, device)
    loader = DataLoader(
        SafeImageItems(dataset, method.image_transform(False)), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, pin_memory=device.type == "cuda", collate_fn=ImageBatch,
    )
    skipped: list[tuple[int, str]] = []

    def encode(batch: ImageBatch) -> Embedding | None:
        report_unreadable([reason for _, reason in batch.errors], on_error)  # raises under "raise"
        skipped.extend(batch.errors)
        if batch.pixels is None:
            return None
        return method.encode_image(batch.pixels.to(device, non_blocking=True))

    emb = _encode(method, loader, encode, len, dataset.num_images, "images", progress)
    if skipped:
        name = f"{dataset.name}/{dataset.split}" if dataset.name else type(dataset).__name__
        dropped = [i for i, _ in skipped]
        n_caps = int(np.isin(dataset.caption_to_image, dropped).sum())
        dataset.drop_images(dropped)
        dataset.skipped_images = [*getattr(dataset, "skipped_images", []), *(r for _, r in skipped)]
        log.warning("%s: evaluating without %d unreadable image(s) and their %d caption(s); %d images left",
                    name, len(dropped), n_caps, dataset.num_images)
    return emb


def encode_captions(
    method: nn.Module,
    dataset: RetrievalDataset,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    *,
    progress: bool = True,
) -> Embedding:
    """Embeddings (on the CPU, in dataset order) of every caption, each tokenised and encoded once.

    Uses ``method.tokenize`` and ``method.encode_text`` in eval mode without gradients; ``device``
    as in :func:`encode_images`.
    """
    device = _prepare(method, device)
    loader = DataLoader(
        CaptionItems(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_as_list
    )
    return _encode(
        method, loader, lambda texts: method.encode_text(method.tokenize(texts).to(device)), len,
        dataset.num_captions, "captions", progress,
    )


__all__ = ["CaptionItems", "ImageBatch", "ImageItems", "SafeImageItems", "encode_captions", "encode_images", "module_device"]
