"""Cosine similarity between point embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ComponentConfig
from ..embeddings import Embedding, PointEmbedding
from .base import Similarity


class CosineConfig(ComponentConfig):
    """Cosine similarity has no options."""


class Cosine(Similarity):
    """cos(q, g) for every query/gallery pair of point embeddings."""

    accepts = (PointEmbedding,)

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        q = F.normalize(query.vectors, dim=-1)  # type: ignore[attr-defined]
        g = F.normalize(gallery.vectors, dim=-1)  # type: ignore[attr-defined]
        return q @ g.t()

    def prepare(self, emb: Embedding, generator: torch.Generator | None = None) -> Embedding:
        self.check(emb, emb)
        return PointEmbedding(F.normalize(emb.vectors, dim=-1))  # type: ignore[attr-defined]

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        return 4


def build_cosine(cfg: CosineConfig, **_: object) -> Cosine:
    """Cosine similarity of point embeddings."""
    return Cosine()
