"""Raw dot-product similarity of point or set embeddings, with no re-normalisation.

The official evaluation code of VSE++/VSE∞, PVSE and PCME scores stored embeddings with plain dot
products (and, for sets, the maximum over the K × K' pairs).  ``cosine`` and ``mil_max`` normalise their
inputs again, which is right for a model's own outputs but not bit-for-bit what those scripts do on
stored vectors (for float16 vectors the two orders of rounding disagree on about 1 % of queries).
"""
from __future__ import annotations

import torch

from ..config import ComponentConfig
from ..embeddings import Embedding, PointEmbedding, SetEmbedding
from .base import SearchVectors, Similarity
from .gemm import matmul_t


class DotConfig(ComponentConfig):
    """The dot-product similarity has no options."""


class Dot(Similarity):
    """q · g for point embeddings; max over k, k' of q_k · g_k' for set embeddings (a point is a set of one).

    Vectors are used exactly as given: no normalisation.  Half-precision inputs are multiplied in
    float32 (the products of float16 numbers are exact in float32); float32 and float64 inputs in their
    own precision.
    """

    accepts = (PointEmbedding, SetEmbedding)
    gemm_layout_free = True  # the products, or their max

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        dtype = torch.promote_types(_compute_dtype(query.dtype), _compute_dtype(gallery.dtype))
        q, g = _as_set(query).to(dtype), _as_set(gallery).to(dtype)
        (n, k, d), (m, kg, dg) = q.shape, g.shape
        if d != dg:
            raise ValueError(f"dot: query dim {d} != gallery dim {dg}")
        if k == kg == 1:
            return matmul_t(q[:, 0], g[:, 0])  # the engine's product: the same bits as its blocks
        # one matmul for the whole block: (n·K, D) × (D, m·K') -> (n, K, m, K')
        return matmul_t(q.reshape(n * k, d), g.reshape(m * kg, d)).view(n, k, m, kg).amax(dim=(1, 3))

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        """K × K' products per pair, in the compute precision."""
        dtype = torch.promote_types(_compute_dtype(query.dtype), _compute_dtype(gallery.dtype))
        return _as_set(query).shape[1] * _as_set(gallery).shape[1] * dtype.itemsize

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor:
        """The vectors (N · K, D) in the compute precision (K = 1 for points)."""
        self.check(emb, emb)
        x = _as_set(emb)
        return x.reshape(-1, x.shape[-1]).to(_compute_dtype(emb.dtype))

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """Points: the products are the scores; sets: the max over each pair's K × K' products."""
        k, kg = products.shape[0] // max(n, 1), products.shape[1] // max(m, 1)
        return products if k == kg == 1 else products.view(n, k, m, kg).amax(dim=(1, 3))

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """The vectors as given, K rows per item: the best row pair's product is the score (exact)."""
        self.check(emb, emb)
        return SearchVectors(_as_set(emb).float(), exact=True)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precision (products of float16 numbers are exact in float32), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _as_set(emb: Embedding) -> torch.Tensor:
    """(N, K, D) view of the vectors; a point embedding gives K = 1."""
    x = emb.vectors  # type: ignore[attr-defined]
    return x[:, None, :] if isinstance(emb, PointEmbedding) else x


def build_dot(cfg: DotConfig, **_: object) -> Dot:
    """Raw dot products (max over the K × K' pairs for sets), as official evaluation scripts score stored embeddings."""
    return Dot()
