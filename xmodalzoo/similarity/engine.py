"""The similarity engine: full query × gallery score matrices, or top-k, under a memory budget.

Works for any :class:`~xmodalzoo.similarity.base.Similarity`: the sets are prepared once (seeded),
then scored block by block, each block sized so that its working memory stays below ``max_bytes``.
There is no Python loop over single queries; blocks are as large as the budget allows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from ..devices import resolve_device
from ..embeddings import Embedding
from .base import Similarity
from .gemm import fresh_product_budget
from .scorer import prepare_scorer

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of working memory per block


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
    #: working bytes per block row that do not scale with ``cols`` (the running top k of :func:`topk`)
    row_bytes: int = 0

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
        return self.rows * (self.cols * self.pair_bytes + self.row_bytes)


def even_size(total: int, size: int, min_size: int = MIN_BLOCK) -> int:
    """The smallest block size that splits ``total`` into as many blocks as blocks of ``size`` would.

    Blocks are equal-shaped and the last one is shifted back to end at the border (see
    :class:`ChunkPlan`), so a size that does not divide ``total`` recomputes the overlap: 5,000 items
    in blocks of 4,096 score 8,192.  Evening the size (2 × 2,500) removes that work; it never exceeds
    ``size``, so a budget that admits ``size`` admits it too.
    """
    total, size = max(total, 1), max(1, min(size, max(total, 1)))
    parts = -(-total // size)
    return max(min(total, min_size), -(-total // parts))


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
        return ChunkPlan(rows=even_size(n, pairs // m, min_block), cols=m, pair_bytes=pair_bytes)
    return ChunkPlan(rows=min_rows, cols=even_size(m, pairs // min_rows, min_block), pair_bytes=pair_bytes)


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
    device = resolve_device(device)
    out_device = torch.device(out_device) if out_device is not None else device
    was_training = sim.training
    sim.eval()
    try:
        scorer = prepare_scorer(sim, query, gallery, device, seed)
        n, m = scorer.n, scorer.m
        plan = plan_chunks(n, m, sim.pair_bytes(scorer.query, scorer.gallery), max_bytes)
        out = torch.empty(n, m, dtype=torch.float32, device=out_device)
        for rows, cols in plan.blocks(n, m):
            out[rows, cols] = scorer.block(rows, cols).to(out_device)
        return out
    finally:
        sim.train(was_training)


#: working bytes per (query, gallery) pair while a block is reduced to its top k (after the
#: similarity's forward has freed its intermediates): the float32 score block (4), and when a tie
#: crosses the k-th score, the int32 image of the scores (4), the int64 sort keys (8) and bool masks
TOPK_PAIR_BYTES = 16
#: working bytes per (query row, kept slot) for the running top k and its merge with a block's top k:
#: running keys + scores (12), the block's candidates (keys 8 + scores 4), the 2k-column
#: concatenations (keys 16 + scores 8) and the merge's topk outputs and gathered scores (16 + 4),
#: with room for the temporaries of the block's own topk and keys
TOPK_SLOT_BYTES = 80
#: the low 32 bits of a sort key hold ``_LOW_MAX - gallery index`` (so a lower index ranks higher)
_LOW_MAX = (1 << 32) - 1


#: the largest block :func:`topk` prefers (the budget ``max_bytes`` may lower it): for point
#: embeddings (16 bytes per pair) its product stays under 32 MiB, glibc's largest mmap threshold, so
#: a backend that returns fresh products (oneDNN)
#: reuses heap memory instead of paying a page fault per 4 KiB (2 threads, D = 512: 5.5 ms/GFLOP
#: for 1,250 × 6,250 blocks, 6.4 for 2,500 × 6,250)
TOPK_HOT_BYTES = 128 << 20
#: the most gallery columns per :func:`topk` block when the budget allows (wide enough for the
#: group prefilter of :func:`block_topk`, narrow enough that a tall block stays small)
TOPK_COLS = 8192


def plan_topk(
    n: int, m: int, k: int, pair_bytes: int, max_bytes: int, min_block: int = MIN_BLOCK, fresh_pair_bytes: int = 0
) -> ChunkPlan:
    """Block shape for :func:`topk`: ``rows × (cols × per_pair + k × TOPK_SLOT_BYTES) <= max_bytes``.

    ``per_pair`` is the larger of the similarity's own ``pair_bytes`` (its forward pass, output
    included) and :data:`TOPK_PAIR_BYTES` (reducing the block to its top k happens after the forward's
    intermediates are freed).  Preferred: up to :data:`TOPK_COLS` columns (evened, see
    :func:`even_size`) and as many rows as :data:`TOPK_HOT_BYTES` admits (for a backend that returns
    a fresh product per block, ``fresh_pair_bytes`` of it per pair, see
    :attr:`~xmodalzoo.similarity.scorer.BlockScorer.fresh_pair_bytes`: no more than keep it within
    :data:`~xmodalzoo.similarity.gemm.FRESH_PRODUCT_BYTES`); past that, whole gallery rows as in
    :func:`plan_chunks`, then fewer columns.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    n, m, k = max(n, 1), max(m, 1), max(k, 0)
    per_pair = max(int(pair_bytes), TOPK_PAIR_BYTES)
    per_row = k * TOPK_SLOT_BYTES
    min_rows, min_cols = min(n, min_block), min(m, min_block)
    smallest = min_rows * (min_cols * per_pair + per_row)
    if max_bytes < smallest:
        raise ValueError(
            f"max_bytes={max_bytes} is smaller than the {smallest} bytes of the smallest top-{k} block "
            f"({min_rows} × {min_cols} pairs at {per_pair} bytes per pair, plus {k} kept items per row "
            f"at {TOPK_SLOT_BYTES} bytes each)"
        )
    # preferred: blocks of at most TOPK_COLS columns and TOPK_HOT_BYTES (a larger block multiplies
    # no faster, and a fresh one pays a page fault per 4 KiB on first touch)
    cols = even_size(m, TOPK_COLS, min_block)
    hot = fresh_product_budget(TOPK_HOT_BYTES, per_pair, fresh_pair_bytes)
    rows = min(max_bytes, hot) // (cols * per_pair + per_row)
    if rows >= min_rows:
        return ChunkPlan(rows=even_size(n, rows, min_block), cols=cols, pair_bytes=per_pair, row_bytes=per_row)
    full_row = m * per_pair + per_row
    if max_bytes >= min_rows * full_row:
        rows = even_size(n, max_bytes // full_row, min_block)
        return ChunkPlan(rows=rows, cols=m, pair_bytes=per_pair, row_bytes=per_row)
    cols = even_size(m, (max_bytes // min_rows - per_row) // per_pair, min_block)
    return ChunkPlan(rows=min_rows, cols=cols, pair_bytes=per_pair, row_bytes=per_row)


def sort_keys(scores: torch.Tensor, index: int | torch.Tensor) -> torch.Tensor:
    """int64 keys, one per score, whose descending order is the stable descending order of ``scores``.

    The high 32 bits are an order-preserving integer image of the float32 score (``-0.0`` ties with
    ``0.0``; every NaN ranks above ``+inf`` and ties with the other NaNs, as in ``torch.sort``); the
    low 32 bits are ``2**32 - 1 - gallery index``, so equal scores rank by the lower index and keys
    are unique within a row.  ``index`` is the gallery index of each score (broadcastable), or an int:
    column j is gallery item ``index + j``.  Working memory: 12 bytes per score besides ``scores``.
    """
    scores = scores.float()
    bits = scores.view(torch.int32)  # same storage, no copy
    mono = bits >> 31  # -1 for negative floats, 0 otherwise
    mono &= 0x7FFFFFFF
    mono ^= bits  # negative floats: flip the magnitude bits, so larger floats give larger integers
    mono.masked_fill_(mono == -1, 0)  # -0.0 ties with 0.0
    mono.masked_fill_(torch.isnan(scores), 0x7FFFFFFF)  # NaN first, all NaNs equal
    keys = mono.to(torch.int64)
    del mono
    keys <<= 32
    if isinstance(index, int):
        index = torch.arange(index, index + scores.shape[-1], device=scores.device)
    keys += _LOW_MAX - index
    return keys


def key_index(keys: torch.Tensor) -> torch.Tensor:
    """The gallery index stored in the low bits of :func:`sort_keys` keys."""
    return _LOW_MAX - (keys & _LOW_MAX)


#: columns per group of :func:`block_topk`'s prefilter (a reduction over 32 contiguous floats vectorises)
TOPK_GROUP = 32


def block_topk(
    block: torch.Tensor, k: int, first_index: int, floor: torch.Tensor | None = None,
    maxima: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort keys and scores (R, ≤ min(k, C)), best first, of the k best columns of each row of a score block.

    The same items as a stable descending sort's first k (column j is gallery item
    ``first_index + j``).  Wide row-contiguous blocks are first narrowed to candidates
    (:func:`_group_candidates`); then usually a single ``torch.topk`` of k + 1, with no working
    memory per pair: its choice among equal scores is arbitrary, which only matters when the k-th
    score equals the (k+1)-th (or is NaN); then the scores go through :func:`sort_keys` (12 bytes
    per pair besides the block).

    ``floor`` (R,), when given, is the k-th best score a running top k of these rows already holds,
    from gallery items before ``first_index``: an item of the block scoring at most that can never
    enter it (a tie ranks after, by its higher index), so it may be left out of the result, which
    then has fewer than k columns (none, when nothing beats the floor).  Merged with that running
    top k, the result gives the same top k as the whole block would.  ``maxima``: the block's
    :func:`group_maxima`, when the caller has them already.
    """
    k = min(k, block.shape[1])
    cols = _group_candidates(block, k, floor, maxima)
    if cols is None:
        return _exact_topk(block, k, first_index)
    if cols.shape[1] == 0:
        empty = torch.empty(block.shape[0], 0, device=block.device)
        return empty.long(), empty
    return _exact_topk(block.gather(1, cols), k, cols + first_index)


def group_maxima(block: torch.Tensor, k: int) -> torch.Tensor | None:
    """(R, C // TOPK_GROUP) maximum of each full group of :data:`TOPK_GROUP` columns of a wide
    row-contiguous block; None where :func:`block_topk`'s prefilter does not apply to a top ``k``."""
    rows, width = block.shape
    groups = width // TOPK_GROUP
    if rows == 0 or groups < 4 * (min(k, width) + 2) or block.stride(1) != 1:
        return None
    return block[:, : groups * TOPK_GROUP].unflatten(1, (groups, TOPK_GROUP)).amax(2)


def _group_candidates(
    block: torch.Tensor, k: int, floor: torch.Tensor | None, maxima: torch.Tensor | None = None
) -> torch.Tensor | None:
    """(R, c) columns of each row that hold every score of its top k + 1 and everything tied with the
    (k+1)-th, except scores at most ``floor``; None where narrowing does not pay or cannot be proven.

    Columns are cut into groups of :data:`TOPK_GROUP` (a shorter tail group is always kept).  A row
    keeps either every group whose maximum is above its floor (at most k + 1 such groups: every
    dropped score is at most the floor), or its k + 1 groups of highest maximum, when the (k+2)-th
    maximum is strictly below the (k+1)-th: then k + 1 kept maxima are strictly above every dropped
    score, so the k + 1 best scores and all their ties lie in the kept groups.  NaN maxima (NaN ranks
    first) or tied ones fail the check and return None.
    """
    rows, width = block.shape
    groups = width // TOPK_GROUP
    if maxima is None:
        maxima = group_maxima(block, k)
    if maxima is None:
        return None
    if floor is None:
        live, most = None, groups
    else:
        if bool(torch.isnan(maxima).any()):
            return None
        live = (maxima > floor[:, None]).sum(1)
        most = int(live.max())
    keep = min(k + 1, most)
    if most > k + 1:  # some rows keep k + 1 groups by the gap between the (k+1)-th and (k+2)-th maxima
        best, which = maxima.topk(k + 2, dim=1)
        gap = best[:, k] > best[:, k + 1]
        if not bool((gap if live is None else gap | (live <= k + 1)).all()):
            return None
    else:
        which = maxima.topk(keep, dim=1).indices
    offsets = torch.arange(TOPK_GROUP, device=block.device)
    cols = (which[:, :keep, None] * TOPK_GROUP + offsets).flatten(1)
    tail = torch.arange(groups * TOPK_GROUP, width, device=block.device)
    return torch.cat([cols, tail.expand(rows, -1)], 1) if len(tail) else cols


def _exact_topk(
    scores: torch.Tensor, k: int, index: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`block_topk` without the prefilter; ``index`` is as in :func:`sort_keys`."""
    k = min(k, scores.shape[1])
    vals, pos = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    if vals.shape[1] == k or bool((vals[:, k] < vals[:, k - 1]).all()):  # nothing tied across the cut
        vals, pos = vals[:, :k], pos[:, :k]
        where = pos + index if isinstance(index, int) else index.gather(1, pos)
        keys, order = sort_keys(vals, where).sort(dim=1, descending=True)  # order within ties
        return keys, vals.gather(1, order)
    del vals, pos
    keys = sort_keys(scores, index)
    top, pos = keys.topk(k, dim=1)
    del keys
    return top, scores.gather(1, pos)


def _row_maxima(block: torch.Tensor, maxima: torch.Tensor | None) -> torch.Tensor:
    """(R,) maximum of each row (NaN if any is NaN), from its :func:`group_maxima` and tail when given."""
    if maxima is None:
        return block.amax(1)
    tail = block.shape[1] - maxima.shape[1] * TOPK_GROUP
    best = maxima.amax(1)
    return torch.maximum(best, block[:, -tail:].amax(1)) if tail else best


#: below every sort key (:func:`sort_keys`): fills the empty slots of a :class:`RunningTopK`
NO_KEY = torch.iinfo(torch.int64).min


class RunningTopK:
    """The running top k of every query (sort keys best first, and their scores), merged block by block.

    Each query must see its gallery in increasing index order (blocks of later items after earlier
    ones).  Then, once a query's top k is full, its k-th score is a floor that no later item at or
    below it can pass (a tie ranks after it, by its higher index): a block none of whose rows beats
    its floor is skipped, one where few rows do is reduced to those rows, and :func:`block_topk`
    narrows every row to the groups above its floor.
    """

    def __init__(self, k: int, queries: int, device: torch.device | str = "cpu") -> None:
        self.k = k
        self.keys = torch.full((queries, k), NO_KEY, dtype=torch.long, device=device)
        self.scores = torch.full((queries, k), -math.inf, device=device)

    def merge(self, queries: slice, block: torch.Tensor, g0: int, wanted: torch.Tensor | None = None) -> None:
        """Merge ``block`` (queries × gallery items ``g0, g0 + 1, ...``) into the queries' top k.

        ``wanted`` (R,) bool, when given, marks the rows whose top k is still needed: the others may
        be left out, or merged only in part, and their top k is no longer meaningful, so a row left
        out once must not be wanted again.
        """
        run_key, run_s = self.keys[queries], self.scores[queries]
        rows: torch.Tensor | None = None
        if wanted is not None:
            picked = wanted.nonzero()[:, 0]
            if len(picked) == 0:
                return
            if 4 * len(picked) <= len(wanted):  # copying the wanted rows out pays when few are left
                rows, block, wanted = picked, block.index_select(0, picked), None
                run_key, run_s = run_key[rows], run_s[rows]
        full = run_key[:, -1] != NO_KEY
        if wanted is None:
            floor = run_s[:, -1] if bool(full.all()) else None
        else:  # a row no longer wanted takes the floor +inf: nothing of the block is kept for it
            floor = torch.where(wanted, run_s[:, -1], math.inf) if bool((full | ~wanted).all()) else None
        maxima = group_maxima(block, self.k)  # one pass over the block, shared with block_topk
        if floor is not None:
            # only rows with a score above their floor can change (NaN, ranking first, counts as above)
            live = (~(_row_maxima(block, maxima) <= floor)).nonzero()[:, 0]
            if len(live) == 0:
                return
            if 4 * len(live) <= len(floor):  # copying the live rows out pays when few are left
                rows = live if rows is None else rows[live]
                block, floor = block.index_select(0, live), floor[live]
                run_key, run_s = run_key[live], run_s[live]
                maxima = None if maxima is None else maxima.index_select(0, live)
        blk_key, blk_s = block_topk(block, self.k, g0, floor, maxima)
        if blk_key.shape[1] == 0:
            return
        top, pos = torch.cat([run_key, blk_key], 1).topk(self.k, dim=1)
        at = queries if rows is None else rows + (queries.start or 0)
        self.keys[at] = top
        self.scores[at] = torch.cat([run_s, blk_s], 1).gather(1, pos)

    def indices(self) -> torch.Tensor:
        """(queries, k) gallery indices, best first."""
        return key_index(self.keys)


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

    Ties are broken by the lower gallery index: the result equals the first k columns of a full
    stable descending sort of the score matrix, whatever ``max_bytes``.  Each block is reduced to its
    own top k (``torch.topk``, see :func:`block_topk`) and merged with the running top k of its rows
    on 2k columns (``torch.topk`` on unique sort keys, see :func:`sort_keys`).  ``max_bytes`` bounds
    the working memory of that (see :func:`plan_topk`), not the (N, k) result nor the prepared sets.
    """
    device = resolve_device(device)
    was_training = sim.training
    sim.eval()
    try:
        scorer = prepare_scorer(sim, query, gallery, device, seed)
        n, m = scorer.n, scorer.m
        k = max(0, min(int(k), m))
        if n == 0 or k == 0:
            return torch.empty(n, k, device=device), torch.empty(n, k, dtype=torch.long, device=device)
        if m > _LOW_MAX:
            raise ValueError(f"topk supports galleries of up to {_LOW_MAX} items, got {m}")
        plan = plan_topk(n, m, k, sim.pair_bytes(scorer.query, scorer.gallery), max_bytes,
                         fresh_pair_bytes=scorer.fresh_pair_bytes)
        top = RunningTopK(k, n, device)
        for r, r_new in plan.spans(n, plan.rows):
            rows = slice(r_new, r + plan.rows)  # overlapped rows are done
            for c, c_new in plan.spans(m, plan.cols):
                block = scorer.block(slice(r, r + plan.rows), slice(c, c + plan.cols), reuse=True)
                top.merge(rows, block[r_new - r :, c_new - c :], c_new)  # skip overlapped columns
                del block
        return top.scores, top.indices()
    finally:
        sim.train(was_training)
