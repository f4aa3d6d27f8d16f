"""Retrieval metrics from a score matrix: ranks, R@K, median/mean rank, R-Precision, mAP@R, PMRP.

Conventions shared by every function here:

* ``scores`` is (num_queries, num_gallery), higher is more similar;
* gallery items are ranked by a *stable descending* sort: among equal scores the **lower gallery
  index comes first** (as in :mod:`xmodalzoo.similarity.ranking` and
  ``np.argsort(-scores, kind="stable")``);
* ranks are 1-based;
* work happens in chunks of query rows on the scores' device; there is no loop over single queries.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from ..similarity.ranking import stable_topk

#: working-memory budget of one row chunk of the ranking functions
DEFAULT_CHUNK_BYTES = 256 << 20
# bytes per (query, gallery) cell while ranking a chunk: the sort order (int64), the sorted scores,
# gathered masks and a running count
_BYTES_PER_CELL = 32


def chunk_rows_for(num_cols: int, budget: int = DEFAULT_CHUNK_BYTES) -> int:
    """Query rows per chunk so that ranking one chunk stays within ``budget`` bytes."""
    return max(1, budget // (max(num_cols, 1) * _BYTES_PER_CELL))


def _check_pair(scores: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be a 2-d (queries, gallery) matrix, got shape {tuple(scores.shape)}")
    if mask.shape != scores.shape:
        raise ValueError(f"{what} has shape {tuple(mask.shape)}; expected the scores' shape {tuple(scores.shape)}")


def first_positive_ranks(scores: torch.Tensor, positives: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
    """1-based rank of each query's best-ranked positive; ``num_gallery + 1`` when it has none.

    ``positives`` is a (num_queries, num_gallery) bool mask (e.g. an image's own captions).  The
    best-ranked positive is the highest-scoring one (the lowest index among equal scores); its rank
    is found by counting the items ranked before it, so no sort is needed.
    """
    _check_pair(scores, positives, "positives")
    n, m = scores.shape
    rows = chunk_rows or chunk_rows_for(m)
    cols = torch.arange(m, device=scores.device)
    out = torch.empty(n, dtype=torch.long, device=scores.device)
    for r in range(0, n, rows):
        s = scores[r : r + rows]
        pos = positives[r : r + rows].to(s.device).bool()
        best = s.masked_fill(~pos, -math.inf).amax(1, keepdim=True)
        first = torch.where(pos & (s == best), cols, m).amin(1, keepdim=True)
        before = (s > best) | ((s == best) & (cols < first))
        out[r : r + rows] = torch.where(pos.any(1), before.sum(1) + 1, m + 1)
    return out


def single_positive_ranks(scores: torch.Tensor, target: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
    """1-based rank of gallery item ``target[q]`` in row ``q`` (one positive per query, e.g. t2i).

    Counts the items ranked before the target (higher score, or equal score and lower index), so no
    sort is needed.
    """
    if scores.dim() != 2 or target.shape != (scores.shape[0],):
        raise ValueError(
            f"target must hold one gallery index per query row: scores {tuple(scores.shape)}, "
            f"target {tuple(target.shape)}"
        )
    n, m = scores.shape
    target = target.to(scores.device).long()
    if n and (int(target.min()) < 0 or int(target.max()) >= m):
        raise ValueError(f"target indices must lie in [0, {m}), got [{int(target.min())}, {int(target.max())}]")
    rows = chunk_rows or chunk_rows_for(m)
    cols = torch.arange(m, device=scores.device)
    out = torch.empty(n, dtype=torch.long, device=scores.device)
    for r in range(0, n, rows):
        s = scores[r : r + rows]
        t = target[r : r + rows]
        s_t = s.gather(1, t[:, None])
        before = (s > s_t) | ((s == s_t) & (cols[None, :] < t[:, None]))
        out[r : r + rows] = before.sum(1) + 1
    return out


def recall_summary(ranks: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@K (percent of queries with rank ≤ K), ``medr`` and ``meanr`` from 1-based ranks.

    ``medr`` is the median rank rounded down (the VSE++ convention: ``floor(median(rank0)) + 1``).
    """
    if ranks.numel() == 0:
        raise ValueError("no queries to summarise: the rank tensor is empty")
    r = ranks.detach().cpu().numpy().astype(np.float64)
    out = {f"r{k}": float(100.0 * np.mean(r <= k)) for k in ks}
    out["medr"] = float(np.floor(np.median(r)))
    out["meanr"] = float(np.mean(r))
    return out


def _r_precision_sorted(hits: torch.Tensor, num_pos: torch.Tensor) -> torch.Tensor:
    """R-Precision per row from hits sorted by rank; NaN where the row has no positive."""
    cum = hits.cumsum(1, dtype=torch.int64)
    r = num_pos.clamp(min=1)
    rp = cum.gather(1, (r - 1)[:, None]).squeeze(1).double() / r.double()
    return torch.where(num_pos > 0, rp, torch.full_like(rp, math.nan))


def _map_at_r_sorted(hits: torch.Tensor, num_pos: torch.Tensor) -> torch.Tensor:
    """mAP@R per row from hits sorted by rank; NaN where the row has no positive."""
    m = hits.shape[1]
    cum = hits.cumsum(1, dtype=torch.int64)
    position = torch.arange(1, m + 1, device=hits.device)
    within = position[None, :] <= num_pos[:, None]
    precision = cum.double() / position.double()
    r = num_pos.clamp(min=1)
    ap = (precision * (hits & within)).sum(1) / r.double()
    return torch.where(num_pos > 0, ap, torch.full_like(ap, math.nan))


def hamming_distances(query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
    """(N, M) number of differing bits between multi-hot label rows (any non-zero entry is a 1)."""
    if query_labels.dim() != 2 or gallery_labels.dim() != 2 or query_labels.shape[1] != gallery_labels.shape[1]:
        raise ValueError(
            f"labels must be (items, classes) with the same number of classes, got "
            f"{tuple(query_labels.shape)} and {tuple(gallery_labels.shape)}"
        )
    # exact in float32 for up to 2^24 classes
    a = (query_labels != 0).float()
    b = (gallery_labels != 0).to(a.device).float()
    return (a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * a @ b.t()).round().long()


def ranked_precision(
    scores: torch.Tensor,
    *,
    positives: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
    zetas: Iterable[int] = (),
    chunk_rows: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-query R-Precision-style metrics from one sort of each row chunk (fractions, float64).

    With ``positives`` (bool, queries × gallery): ``"r_precision"`` and ``"map_at_r"``.  With
    labels: ``"pmrp_z{ζ}"`` for each ζ in ``zetas``, whose positives are the gallery items within
    Hamming distance ζ of the query's multi-hot labels.  Queries without positives get NaN.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be a 2-d (queries, gallery) matrix, got shape {tuple(scores.shape)}")
    n, m = scores.shape
    zetas = [int(z) for z in zetas]
    if any(z < 0 for z in zetas):
        raise ValueError(f"PMRP margins ζ must be ≥ 0, got {zetas}")
    if positives is not None:
        _check_pair(scores, positives, "positives")
    use_labels = bool(zetas) and query_labels is not None and gallery_labels is not None
    if use_labels and (query_labels.shape[0] != n or gallery_labels.shape[0] != m):  # type: ignore[union-attr]
        raise ValueError(
            f"labels do not match the scores {tuple(scores.shape)}: {query_labels.shape[0]} query and "  # type: ignore[union-attr]
            f"{gallery_labels.shape[0]} gallery label rows"  # type: ignore[union-attr]
        )
    names = (["r_precision", "map_at_r"] if positives is not None else []) + (
        [f"pmrp_z{z}" for z in zetas] if use_labels else []
    )
    out = {k: torch.empty(n, dtype=torch.float64, device=scores.device) for k in names}
    if not names:
        return out
    if use_labels:
        q_lab, g_lab = query_labels.to(scores.device), gallery_labels.to(scores.device)  # type: ignore[union-attr]
    rows = chunk_rows or chunk_rows_for(m)
    for r in range(0, n, rows):
        s = scores[r : r + rows]
        # only the first R places of a row matter: rank just the top max(R) of the chunk
        counts: dict[str, torch.Tensor] = {}
        if positives is not None:
            pos = positives[r : r + rows].to(s.device).bool()
            counts["pos"] = pos.sum(1)
        if use_labels:
            dist = hamming_distances(q_lab[r : r + rows], g_lab)
            counts.update({f"z{z}": (dist <= z).sum(1) for z in zetas})
        k = max(1, max(int(c.max()) for c in counts.values()))
        top = stable_topk_indices(s, k)
        if positives is not None:
            hits = pos.gather(1, top)
            out["r_precision"][r : r + rows] = _r_precision_sorted(hits, counts["pos"])
            out["map_at_r"][r : r + rows] = _map_at_r_sorted(hits, counts["pos"])
        if use_labels:
            top_dist = dist.gather(1, top)
            for z in zetas:
                out[f"pmrp_z{z}"][r : r + rows] = _r_precision_sorted(top_dist <= z, counts[f"z{z}"])
    return out


def stable_topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (N, k) of each row's k best items in the stable descending order (ties: lower index first).

    :func:`xmodalzoo.similarity.ranking.stable_topk`, the one exact top k of the package (rows whose
    k-th score is NaN or tied included): usually a ``topk`` with no full sort.
    """
    return stable_topk(scores, k)[1]


def r_precision_map_at_r(
    scores: torch.Tensor, positives: torch.Tensor, chunk_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query R-Precision and mAP@R (fractions in [0, 1], float64); NaN for queries without positives.

    With R the number of positives of a query: R-Precision = (#positives in the top R) / R and
    mAP@R = (1/R) Σ_{i≤R} P@i · rel(i).
    """
    out = ranked_precision(scores, positives=positives, chunk_rows=chunk_rows)
    return out["r_precision"], out["map_at_r"]


def pmrp(
    scores: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_labels: torch.Tensor,
    zetas: Iterable[int] = (0, 1, 2),
    chunk_rows: int | None = None,
) -> dict[int, torch.Tensor]:
    """Plausible-match R-Precision (PCME) per query and per ζ (fractions, float64).

    The positives of a query are the gallery items whose multi-hot labels differ from the query's in
    at most ζ bits.  Queries with no such item get NaN (skipped by :func:`nan_mean_percent`).
    """
    zetas = [int(z) for z in zetas]
    out = ranked_precision(scores, query_labels=query_labels, gallery_labels=gallery_labels, zetas=zetas,
                           chunk_rows=chunk_rows)
    return {z: out[f"pmrp_z{z}"] for z in zetas}


def nan_mean_percent(values: torch.Tensor) -> float:
    """Mean of the non-NaN entries, in percent; NaN when every entry is NaN."""
    valid = values[~torch.isnan(values)]
    if valid.numel() == 0:
        return math.nan
    return float(100.0 * valid.double().mean())


__all__ = [
    "DEFAULT_CHUNK_BYTES", "chunk_rows_for", "first_positive_ranks", "single_positive_ranks",
    "recall_summary", "r_precision_map_at_r", "hamming_distances", "pmrp", "ranked_precision",
    "stable_topk_indices", "nan_mean_percent",
]
