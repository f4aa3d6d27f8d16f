"""Ranking from score matrices, on the scores' device and in row chunks."""
from __future__ import annotations

import torch

from .engine import block_topk, key_index

#: dtypes whose scores :func:`~xmodalzoo.similarity.engine.sort_keys` holds exactly (a float32 image)
_KEYED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def argsort_desc(scores: torch.Tensor, chunk_rows: int = 1024) -> torch.Tensor:
    """Full ranking (N, M) of gallery indices per query, best first; ties keep the lower index first."""
    out = torch.empty(scores.shape, dtype=torch.long, device=scores.device)
    for r in range(0, scores.shape[0], chunk_rows):
        out[r : r + chunk_rows] = torch.argsort(scores[r : r + chunk_rows], dim=1, descending=True, stable=True)
    return out


def stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and indices (N, min(k, M)) of each row's k best items: the first k of a stable descending
    sort (ties: lower index first; NaN ranks above everything and ``-0.0`` ties with ``0.0``, as in
    ``torch.sort``).

    The engine's exact top k (:func:`~xmodalzoo.similarity.engine.block_topk`), so every top k of
    the package agrees; scores of other dtypes than float32/16/bfloat16 (e.g. float64, whose sort keys
    would round) take a full stable sort.
    """
    k = max(0, min(int(k), scores.shape[1]))
    if scores.dtype not in _KEYED_DTYPES:
        order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
        return scores.gather(1, order), order
    keys, vals = block_topk(scores, k, 0)
    return vals, key_index(keys)


def topk_desc(scores: torch.Tensor, k: int, chunk_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k scores and indices per row (:func:`stable_topk` in row chunks); ties keep the lower index first."""
    k = min(k, scores.shape[1])
    vals, idx = [], []
    for r in range(0, scores.shape[0], chunk_rows):
        v, i = stable_topk(scores[r : r + chunk_rows], k)
        vals.append(v)
        idx.append(i)
    if not vals:
        return scores.new_empty(0, k), torch.empty(0, k, dtype=torch.long, device=scores.device)
    return torch.cat(vals), torch.cat(idx)


def positive_ranks(scores: torch.Tensor, positives: torch.Tensor, chunk_rows: int = 1024) -> torch.Tensor:
    """Rank (0 = best) of each query's best-ranked positive under the stable descending order.

    ``positives`` is a bool (N, M) mask.  The rank of gallery item j is the number of items with a
    higher score plus the number with an equal score and a lower index (ties: lower index first).
    Queries without any positive get rank M.
    """
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} differ in shape")
    n, m = scores.shape
    out = torch.empty(n, dtype=torch.long, device=scores.device)
    for r in range(0, n, chunk_rows):
        s = scores[r : r + chunk_rows]
        pos = positives[r : r + chunk_rows].to(s.device)
        order = torch.argsort(s, dim=1, descending=True, stable=True)
        hit = pos.gather(1, order)
        has = hit.any(1)
        first = hit.float().argmax(1)
        out[r : r + chunk_rows] = torch.where(has, first, torch.full_like(first, m))
    return out
