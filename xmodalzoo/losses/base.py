"""The loss interface."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..embeddings import Embedding
from ..similarity.base import Similarity


@dataclass
class LossContext:
    """What a loss may read besides the embeddings.

    ``positives`` (B_i, B_t) bool marks matching image/caption pairs of the batch; ``similarity`` is
    the model's similarity module (its learnable parameters belong to the model); ``epoch`` and
    ``step`` drive schedules such as an all-negatives warm-up; ``extras`` holds outputs of a
    training-only batch module (e.g. relation-enhanced embeddings).
    """

    positives: torch.Tensor
    similarity: Similarity
    epoch: int = 0
    step: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossOutput:
    """The scalar to minimise and its named parts (for logging)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class Loss(nn.Module):
    """Base class: ``forward(image_emb, text_emb, ctx) -> LossOutput``; may hold parameters."""

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:  # pragma: no cover
        raise NotImplementedError
