"""Encode every image of a split once and every caption once, in batches, on one device."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import RetrievalDataset
from ..embeddings import Embedding


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU; anything else as given (``cpu``, ``cuda:1``)."""
    if spec is None or (isinstance(spec, str) and spec == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def module_device(module: nn.Module) -> torch.device:
    """Device of the module's first parameter or buffer (CPU when it has none)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


class ImageItems(Dataset):
    """Image ``i`` of a dataset, loaded once and passed through ``transform``."""

    def __init__(self, dataset: RetrievalDataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return self.dataset.num_images

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.dataset.load_image(index))


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
    encode: Callable[[Any], Embedding],
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
                parts.append(encode(batch).detach().to("cpu"))
                bar.advance(task, sizes(batch))
    finally:
        method.train(was_training)
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
) -> Embedding:
    """Embeddings (on the CPU, in dataset order) of every image, each loaded and encoded once.

    Uses ``method.image_transform(False)`` and ``method.encode_image`` in eval mode without
    gradients.  ``device`` None keeps the method where it is; otherwise the method is moved there.
    """
    device = _prepare(method, device)
    loader = DataLoader(
        ImageItems(dataset, method.image_transform(False)), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, pin_memory=device.type == "cuda",
    )
    return _encode(
        method, loader, lambda x: method.encode_image(x.to(device, non_blocking=True)), len,
        dataset.num_images, "images", progress,
    )


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


__all__ = ["CaptionItems", "ImageItems", "encode_captions", "encode_images", "module_device", "resolve_device"]
