"""Batches that flow from the data loader to methods and losses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TextBatch:
    """Tokenised captions: ``ids`` (B, L) long, ``mask`` (B, L) bool (True = real token)."""

    ids: torch.Tensor
    mask: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device: Any, non_blocking: bool = False) -> "TextBatch":
        return TextBatch(
            self.ids.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.extra.items()},
        )

    def __getitem__(self, index: Any) -> "TextBatch":
        return TextBatch(self.ids[index], self.mask[index], {k: v[index] for k, v in self.extra.items()})


@dataclass
class Batch:
    """A training batch: ``images`` (B_i, ...) and ``texts`` (B_t captions).

    ``image_index`` / ``caption_index`` are dataset indices; ``caption_image`` (B_t,) gives, for each
    caption, the row of its image in ``images``.  Several captions may share one image row (all 5
    captions of an image in one batch), and one dataset image may appear in two rows.
    """

    images: torch.Tensor
    texts: TextBatch
    image_index: torch.Tensor
    caption_index: torch.Tensor
    caption_image: torch.Tensor

    def positives(self) -> torch.Tensor:
        """(B_i, B_t) bool: image row i and caption t show the same dataset image."""
        cap_img = self.image_index[self.caption_image]
        return self.image_index[:, None] == cap_img[None, :]

    def to(self, device: Any, non_blocking: bool = False) -> "Batch":
        return Batch(
            self.images.to(device, non_blocking=non_blocking),
            self.texts.to(device, non_blocking=non_blocking),
            self.image_index.to(device),
            self.caption_index.to(device),
            self.caption_image.to(device),
        )
