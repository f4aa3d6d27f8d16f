"""Cosine similarity between point embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ComponentConfig
from ..embeddings import Embedding, PointEmbedding
from .base import SearchVectors, Similarity
from .gemm import matmul_t


class CosineConfig(ComponentConfig):
    """Cosine similarity has no options."""


class UnitPointEmbedding(PointEmbedding):
    """Point embeddings already L2-normalised by :meth:`Cosine.prepare` (slices keep the type)."""


class Cosine(Similarity):
    """cos(q, g) for every query/gallery pair of point embeddings."""

    accepts = (PointEmbedding,)
    gemm_layout_free = True  # the products are the scores

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        return matmul_t(_unit(query), _unit(gallery))  # the engine's product: the same bits as its blocks

    def prepare(self, emb: Embedding, generator: torch.Generator | None = None) -> Embedding:
        """Normalise the whole set once; forward then uses the vectors as they are (normalising is
        row-wise, so the engine's blocks give exactly the numbers of a direct call, and a block needs
        no normalised copy of its gallery slice)."""
        self.check(emb, emb)
        return UnitPointEmbedding(_unit(emb))

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        return 4

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """The unit vectors, one row per item: their inner product is the cosine (exact)."""
        self.check(emb, emb)
        return SearchVectors(_unit(emb).float()[:, None, :], exact=True)

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor:
        """The unit vectors (N, D): the scores are their inner products."""
        return _unit(emb)

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """Nothing to do: the products are the cosines."""
        return products


def _unit(emb: Embedding) -> torch.Tensor:
    if isinstance(emb, UnitPointEmbedding):
        return emb.vectors
    return F.normalize(emb.vectors, dim=-1)  # type: ignore[attr-defined]


def build_cosine(cfg: CosineConfig, **_: object) -> Cosine:
    """Cosine similarity of point embeddings."""
    return Cosine()
