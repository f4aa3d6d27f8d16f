"""The similarity engine: full query × gallery score matrices, or top-k, under a memory budget.

Works for any :class:`~xmodalzoo.similarity.base.Similarity`: the sets are prepared once (seeded),
then scored block by block, each block sized so that its working memory stays below ``max_bytes``.
There is no Python loop over single queries; blocks are as large as the budget allows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..embeddings import Embedding
from .base import Similarity

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of working memory per block


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: blocks are at least this many rows and columns (unless the matrix is smaller): tiny blocks make
#: BLAS switch to other kernels whose rounding differs, and a chunked result must equal the unchunked one
MIN_BLOCK = 16


@dataclass(frozen=True)
class ChunkPlan:
    """How a query × gallery product is split: blocks of ``rows`` queries × ``cols`` gallery items.

    Every block has the same shape; the last block along an axis is shifted back to end at the
    border (it overlaps its neighbour) rather than being smaller, so every score is computed by the
    same kernel whatever the budget — on the CPU a chunked matrix equals the unchunked one bit for bit.
    """

    rows: int
    cols: int
    pair_bytes: int

    def spans(self, total: int, size: int) -> Iterator[tuple[int, int]]:
        """(start, first_new) per block along one axis; the block is ``start:start+size``."""
        done = 0
        while done < total:
            start = min(done, total - size)
            yield start, done
            done = start + size

    def blocks(self, n: int, m: int) -> Iterator[tuple[slice, slice]]:
        for r, _ in self.spans(n, self.rows):
            for c, _ in self.spans(m, self.cols):
                yield slice(r, r + self.rows), slice(c, c + self.cols)

    @property
    def block_bytes(self) -> int:
        return self.rows * self.cols * self.pair_bytes


def plan_chunks(n: int, m: int, pair_bytes: int, max_bytes: int, min_block: int = MIN_BLOCK) -> ChunkPlan:
    """Largest equal-shaped blocks (whole gallery rows first) whose working memory fits in ``max_bytes``."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    n, m = max(n, 1), max(m, 1)
    pair_bytes = max(1, int(pair_bytes))
    min_rows, min_cols = min(n, min_block), min(m, min_block)
    pairs = max_bytes // pair_bytes
    if pairs < min_rows * min_cols:
        raise ValueError(
            f"max_bytes={max_bytes} is smaller than the {min_rows * min_cols * pair_bytes} bytes of the "
            f"smallest block ({min_rows} × {min_cols} pairs at {pair_bytes} bytes per pair)"
        )
    if pairs >= m * min_rows:
        return ChunkPlan(rows=min(n, pairs // m), cols=m, pair_bytes=pair_bytes)
    return ChunkPlan(rows=min_rows, cols=min(m, pairs // min_rows), pair_bytes=pair_bytes)


def _prepared(
    sim: Similarity, query: Embedding, gallery: Embedding, device: torch.device, seed: int
) -> tuple[Embedding, Embedding]:
    sim.check(query, gallery)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    q = sim.prepare(query.to(device), generator=gen)
    gen.manual_seed(seed + 1)
    g = sim.prepare(gallery.to(device), generator=gen)
    return q, g


@torch.no_grad()
def similarity_matrix(
    sim: Similarity,
    query: Embedding,
    gallery: Embedding,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device | None = None,
    out_device: str | torch.device | None = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """The (N, M) score matrix of ``sim`` for every query × gallery pair, computed in blocks.

    ``max_bytes`` bounds the working memory of one block (the output matrix itself is not counted;
    use :func:`topk` to avoid holding it).  Sampling similarities are seeded with ``seed``, so the
    result is deterministic and independent of the block sizes.
    """
    device = torch.device(device) if device is not None else default_device()
    out_device = torch.device(out_device) if out_device is not None else device
    was_training = sim.training
    sim.eval()
    try:
        q, g = _prepared(sim, query, gallery, device, seed)
        n, m = len(q), len(g)
        plan = plan_chunks(n, m, sim.pair_bytes(q, g), max_bytes)
        out = torch.empty(n, m, dtype=torch.float32, device=out_device)
        for rows, cols in plan.blocks(n, m):
            out[rows, cols] = sim(q[rows], g[cols]).float().to(out_device)
        return out
    finally:
        sim.train(was_training)


@torch.no_grad()
def topk(
    sim: Similarity,
    query: Embedding,
    gallery: Embedding,
    k: int,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and indices (N, k) of each query's k best gallery items, never holding all N × M.

    Ties are broken by the lower gallery index.
    """
    device = torch.device(device) if device is not None else default_device()
    was_training = sim.training
    sim.eval()
    try:
        q, g = _prepared(sim, query, gallery, device, seed)
        n, m = len(q), len(g)
        k = min(k, m)
        # the running top-k of a block row also lives in memory: count it as extra columns
        plan = plan_chunks(n, m + k, sim.pair_bytes(q, g), max_bytes)
        plan = ChunkPlan(plan.rows, min(plan.cols, m), plan.pair_bytes)
        best_s = torch.empty(n, k, device=device)
        best_i = torch.empty(n, k, dtype=torch.long, device=device)
        for r, r_new in plan.spans(n, plan.rows):
            rows = slice(r, r + plan.rows)
            run_s = torch.full((plan.rows, 0), float("-inf"), device=device)
            run_i = torch.empty((plan.rows, 0), dtype=torch.long, device=device)
            for c, c_new in plan.spans(m, plan.cols):
                block = sim(q[rows], g[c : c + plan.cols]).float()[:, c_new - c :]  # skip overlapped columns
                idx = torch.arange(c_new, c + plan.cols, device=device).expand_as(block)
                run_s, run_i = stable_topk(torch.cat([run_s, block], 1), torch.cat([run_i, idx], 1), k)
            best_s[rows], best_i[rows] = run_s, run_i
        return best_s, best_i
    finally:
        sim.train(was_training)


def stable_topk(scores: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per row by score, ties broken by the lower ``index``."""
    k = min(k, scores.shape[1])
    # sort by index first, then a stable sort by score keeps index order among equal scores
    order = torch.argsort(index, dim=1, stable=True)
    s, i = scores.gather(1, order), index.gather(1, order)
    order = torch.argsort(s, dim=1, descending=True, stable=True)[:, :k]
    return s.gather(1, order), i.gather(1, order)
