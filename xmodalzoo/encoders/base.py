"""Encoder interfaces: what every image/text encoder returns and exposes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .tokenizers import Tokenizer


@dataclass
class EncoderOutput:
    """Features of a batch of items.

    ``pooled`` (B, P) is the global feature; ``local`` (B, L, F) the local features (grid cells,
    regions, contextual word states) with ``mask`` (B, L) True where valid; ``inputs`` (B, L, I) the
    input-level fragments some heads attend over (word embeddings for text; for images the same
    tensor as ``local``).
    """

    pooled: torch.Tensor
    local: torch.Tensor
    mask: torch.Tensor
    inputs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs is None:
            self.inputs = self.local


class ImageEncoder(nn.Module):
    """Base class: ``forward(images) -> EncoderOutput``.

    Subclasses set ``pooled_dim``, ``local_dim`` and ``input_dim`` and say what the data loader must
    feed them through :meth:`transform` (a callable applied to each loaded image or feature array).
    """

    pooled_dim: int
    local_dim: int
    input_dim: int
    #: what the dataset must load: "pil" images or "features" arrays (see RetrievalDataset.image_kind)
    input_kind: str = "pil"

    def transform(self, train: bool) -> Callable[[Any], torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def backbone_parameters(self) -> list[str]:
        """Name prefixes of the pretrained backbone (for lr multipliers and freezing)."""
        return []


class TextEncoder(nn.Module):
    """Base class: ``forward(TextBatch) -> EncoderOutput``; owns its ``tokenizer``."""

    pooled_dim: int
    local_dim: int
    input_dim: int
    tokenizer: Tokenizer
