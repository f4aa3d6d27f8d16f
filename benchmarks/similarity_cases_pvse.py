"""PVSE's mil_max cases for benchmarks/similarity_engine.py: K = 2 and K = 4 unit-vector sets.

The loop baseline follows the official evaluation: for each query, a tensordot of its K vectors with
every gallery vector, the max over the K × K cosines, then an argsort of the row.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import SetEmbedding
from xmodalzoo_pvse.similarity import MILMax


def make_build(k: int) -> Callable[[int, int, int, torch.device], tuple[MILMax, SetEmbedding, SetEmbedding]]:
    def build(n: int, m: int, d: int, device: torch.device) -> tuple[MILMax, SetEmbedding, SetEmbedding]:
        gen = torch.Generator().manual_seed(0)
        q = F.normalize(torch.randn(n, k, d, generator=gen), dim=-1)
        g = F.normalize(torch.randn(m, k, d, generator=gen), dim=-1)
        return MILMax(), SetEmbedding(q.to(device)), SetEmbedding(g.to(device))

    return build


def loop_mil_max(sim: Any, query: SetEmbedding, gallery: SetEmbedding, n_queries: int) -> None:
    """Per query: (K, D) · (M, K', D) -> (K, M, K'), max over K × K', argsort."""
    g = gallery.vectors
    for i in range(n_queries):
        cos = torch.tensordot(query.vectors[i], g, dims=([1], [2]))  # (K, M, K')
        scores = cos.amax(dim=(0, 2))
        torch.argsort(scores, descending=True)


CASES = {
    "mil_max_k2": {"build": make_build(2), "loop": loop_mil_max},
    "mil_max_k4": {"build": make_build(4), "loop": loop_mil_max},
}
