"""DivE's set similarities for benchmarks/similarity_engine.py: K = 4 unit-vector sets on both sides.

The loop baseline follows the released DivE evaluation (eval.py): for each query, one product of its K
elements with every gallery element (K × M·K' cosines), pooled per gallery item, then an argsort.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import SetEmbedding
from xmodalzoo_dive.similarity import Chamfer, SetSimilarity, SmoothChamfer, two_way_logsumexp


def make_build(sim_cls: Callable[[], SetSimilarity], k: int) -> Callable[..., tuple[SetSimilarity, SetEmbedding, SetEmbedding]]:
    def build(n: int, m: int, d: int, device: torch.device) -> tuple[SetSimilarity, SetEmbedding, SetEmbedding]:
        gen = torch.Generator().manual_seed(0)
        q = F.normalize(torch.randn(n, k, d, generator=gen), dim=-1)
        g = F.normalize(torch.randn(m, k, d, generator=gen), dim=-1)
        return sim_cls(), SetEmbedding(q.to(device)), SetEmbedding(g.to(device))

    return build


def pooled_scores(sim: SetSimilarity, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """The released evaluation's scores of unit sets (n, K, D) × (m, K', D): one product, then pooling (no
    re-normalisation: the released embeddings are already unit vectors)."""
    (n, k, d), (m, kg, _) = query.shape, gallery.shape
    cos = (query.reshape(n * k, d) @ gallery.reshape(m * kg, d).t()).view(n, k, m, kg)
    if type(sim) is SmoothChamfer:  # not its Euclidean subclass, which pools distances
        return two_way_logsumexp(cos.mul_(sim.alpha), sim.alpha)
    if type(sim) is Chamfer:
        return (cos.amax(dim=3).mean(1) + cos.amax(dim=1).mean(2)) / 2
    raise TypeError(f"pooled_scores: no released-evaluation loop for {type(sim).__name__}")


def loop_one_query(sim: Any, query: SetEmbedding, gallery: SetEmbedding, n_queries: int) -> None:
    """Per query: its (1, M) scores against the whole gallery (one K × M·K' product), then an argsort."""
    for i in range(n_queries):
        scores = pooled_scores(sim, query.vectors[i : i + 1], gallery.vectors)
        torch.argsort(scores[0], descending=True)


CASES = {
    "smooth_chamfer_k4": {"build": make_build(SmoothChamfer, 4), "loop": loop_one_query},
    "chamfer_k4": {"build": make_build(Chamfer, 4), "loop": loop_one_query},
}
