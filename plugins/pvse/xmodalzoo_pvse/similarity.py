"""MIL max similarity: the best cosine among the K × K' pairs of two embedding sets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from xmodalzoo.plugin_api import ComponentConfig, Embedding, SearchVectors, SetEmbedding, Similarity


class MILMaxConfig(ComponentConfig):
    """MIL max similarity has no options."""


class MILMax(Similarity):
    """S(q, g) = max over k, k' of cos(q_k, g_k') for set embeddings (N, K, D) and (M, K', D).

    Inputs are normalised here, row by row (heads already give unit vectors).  Normalising in
    :meth:`forward` rather than in ``prepare`` makes the engine's blocks compute exactly what one
    direct call does; they agree bit for bit wherever the matmul kernel sums in the same order
    (tested), and within ~1e-7 otherwise.  Query and gallery set sizes may differ.
    """

    accepts = (SetEmbedding,)
    gemm_layout_free = True  # the products, or their max

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        q = F.normalize(query.vectors, dim=-1)  # type: ignore[attr-defined]
        g = F.normalize(gallery.vectors, dim=-1)  # type: ignore[attr-defined]
        (n, k, d), (m, kg, dg) = q.shape, g.shape
        if d != dg:
            raise ValueError(f"mil_max: query dim {d} != gallery dim {dg}")
        # one matmul for the whole block: (n·K, D) × (D, m·K') -> (n, K, m, K')
        cos = (q.reshape(n * k, d) @ g.reshape(m * kg, d).t()).view(n, k, m, kg)
        return cos.amax(dim=(1, 3))

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor:
        """The unit elements (N·K, D): one (n·K) × (m·K') GEMM gives every element cosine of a block."""
        self.check(emb, emb)
        x = F.normalize(emb.vectors, dim=-1)  # type: ignore[attr-defined]
        return x.reshape(-1, x.shape[-1])

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """Max over the K × K' cosines of each pair: (n·K, m·K') viewed as (n, K, m, K')."""
        k, kg = products.shape[0] // n, products.shape[1] // m
        return products.view(n, k, m, kg).amax(dim=3).amax(dim=1)

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        """K × K' cosines per pair."""
        k = query.vectors.shape[1]  # type: ignore[attr-defined]
        kg = gallery.vectors.shape[1]  # type: ignore[attr-defined]
        return k * kg * query.vectors.element_size()  # type: ignore[attr-defined]

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """The K unit elements of each set: the best element pair's inner product *is* the score, so
        the candidates of a per-element search contain the exact top k (exact)."""
        self.check(emb, emb)
        return SearchVectors(F.normalize(emb.vectors.float(), dim=-1), exact=True)  # type: ignore[attr-defined]


def build_mil_max(cfg: MILMaxConfig, **_: object) -> MILMax:
    """Max over the K × K' cosines of two embedding sets (multiple-instance matching)."""
    return MILMax()
