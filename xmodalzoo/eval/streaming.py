"""Streaming fold metrics: every metric of a fold taken block by block while the block is in cache.

The (images × captions) score matrix is never held: the engine's :class:`BlockScorer` scores one
block at a time, and each block updates, for both directions (i2t reads rows, t2i reads columns):

* **ranks by counting.**  The rank of a query's best positive is 1 + the number of gallery items
  ranked before it: a higher score, or an equal score and a lower gallery index (the stable
  descending order of :mod:`xmodalzoo.eval.metrics`).  The threshold (the best positive's score and
  index) must be known before the first block is counted, so the positive pairs are scored first
  (:meth:`BlockScorer.pairs`, a few thousandths of the work).  Each block then re-reads the exact
  scores of the positive pairs it contains; if any differs from the first estimate (a kernel that
  rounds differently by block shape), the counts are moved to the exact thresholds: on a GPU, whose
  kernels do round by shape, from the few scores kept near each threshold (:class:`_Window`); where
  that cannot be proven exact, and on the CPU, by a second counting pass.  The ranks are always
  those of the block scores.
* **top-R selection** for R-Precision, mAP@R and PMRP: a running top k per query (k = the direction's
  largest number of positives), merged block by block on unique sort keys
  (:class:`~xmodalzoo.similarity.engine.RunningTopK`), equal to the first k of a full stable sort.
  Once a query's top k is full, its k-th score is a floor: block rows that cannot beat it are skipped.
  Where every positive is a caption with its own image, a query whose count reaches its R has no
  hit in its top R: its top k is no longer kept (:func:`_positives_are_pairs`).

Working memory: one block (its scores, reused from block to block, and one float32 comparison
buffer), bounded by ``max_bytes`` and by
:data:`HOT_BLOCK_BYTES`, plus O(N + M) per-query state (thresholds, counts, the running top k).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..embeddings import Embedding
from ..errors import RecipeError
from ..similarity.base import Similarity
from ..similarity.engine import (
    MIN_BLOCK, TOPK_PAIR_BYTES, TOPK_SLOT_BYTES, ChunkPlan, RunningTopK, even_size,
)
from ..similarity.gemm import cpu_backend, fresh_product_budget
from ..similarity.scorer import BlockScorer, prepare_scorer
from . import metrics as M
from .summary import summarise_fold

#: largest working memory of one block (scores plus masks), so that its metrics are taken while it is
#: still in the CPU's cache; the evaluation budget ``max_bytes`` lowers it further
HOT_BLOCK_BYTES = 64 << 20
#: the same on a GPU, where a block is not kept in a cache but each costs a few dozen kernel launches
#: and a few synchronisations: fewer, larger blocks (bounded by ``max_bytes`` all the same)
GPU_HOT_BLOCK_BYTES = 1 << 30
#: images per chunk of the first scoring of the positive pairs (``MIN_BLOCK`` on the CPU, or four
#: times that on oneDNN, whose thread team runs every block); on a GPU each chunk is a launch or
#: three, so chunks are wider
GPU_PAIR_ROWS = 256
#: bytes per pair of the float32 buffer the rank counts compare into (one, reused block to block)
COUNT_PAIR_BYTES = 4
#: gallery columns per block, when the budget allows.  Not too few: each block costs a fixed dozen
#: small torch calls (cosine 1K × 5K on 2 threads, 75 ms with 4,096 against 88 with 1,024); not too
#: many: taller blocks of fewer columns multiply faster through oneDNN (its packed gallery slice is
#: smaller).  Side by side, one process, 4-5 rounds: cosine 5K × 25K 1.25-1.34× its GEMM with 2,500
#: against 1.36-1.42× with 4,096, csd 1.35 against 1.43×, cosine 10K × 50K 1.18 against 1.22×;
#: 1K × 5K runs the same 2 × 2,500 blocks either way
BLOCK_COLS = 2500
#: the same on a GPU
GPU_BLOCK_COLS = 16384


def plan_stream(
    n: int, m: int, pair_bytes: int, k_rows: int, k_cols: int, max_bytes: int, hot_bytes: int = HOT_BLOCK_BYTES,
    block_cols: int = BLOCK_COLS, fresh_pair_bytes: int = 0,
) -> ChunkPlan:
    """Equal-shaped blocks for :func:`stream_fold_metrics`.

    One block needs ``rows × cols × per_pair + rows × k_rows × S + cols × k_cols × S`` bytes (per_pair
    = the larger of the similarity's ``pair_bytes`` and the engine's top-k bytes per pair, plus the
    :data:`COUNT_PAIR_BYTES` of the rank counts' buffer; S = the engine's bytes per kept top-k slot),
    at most ``min(max_bytes, hot_bytes)``; columns first (up to ``block_cols``), then as many rows
    as fit; both evened (:func:`~xmodalzoo.similarity.engine.even_size`).  ``fresh_pair_bytes``:
    the bytes per pair of a product the backend allocates afresh for every block (oneDNN's); the
    block then also keeps that product within :data:`~xmodalzoo.similarity.gemm.FRESH_PRODUCT_BYTES`.
    Both caches' bounds are preferences: only ``max_bytes`` is a limit.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    n, m = max(n, 1), max(m, 1)
    per_pair = max(int(pair_bytes), TOPK_PAIR_BYTES) + COUNT_PAIR_BYTES
    budget = min(max_bytes, max(fresh_product_budget(hot_bytes, per_pair, fresh_pair_bytes), 1))
    min_rows, min_cols = min(n, MIN_BLOCK), min(m, MIN_BLOCK)
    cols = even_size(m, max(block_cols, min_cols))
    while True:
        free = budget - cols * k_cols * TOPK_SLOT_BYTES
        rows = free // (cols * per_pair + k_rows * TOPK_SLOT_BYTES) if free > 0 else 0
        if rows >= min_rows:
            return ChunkPlan(rows=even_size(n, rows), cols=cols, pair_bytes=per_pair, row_bytes=k_rows * TOPK_SLOT_BYTES)
        if cols == min_cols:
            break
        cols = even_size(m, max(min_cols, cols // 2))
    if budget < max_bytes:  # the cache bounds are preferences; only the budget is a limit
        return plan_stream(n, m, pair_bytes, k_rows, k_cols, max_bytes, hot_bytes=max_bytes, block_cols=block_cols)
    smallest = min_rows * min_cols * per_pair + (min_rows * k_rows + min_cols * k_cols) * TOPK_SLOT_BYTES
    raise RecipeError(  # a ValueError too; one line from the CLI
        f"eval.max_bytes={max_bytes} is smaller than the {smallest} bytes of the smallest evaluation block "
        f"({min_rows} × {min_cols} pairs at {per_pair} bytes, plus top-{k_rows}/{k_cols} kept per row/column "
        f"at {TOPK_SLOT_BYTES} bytes each): raise eval.max_bytes"
    )


def _blocks(plan: ChunkPlan, n: int, m: int) -> Iterator[tuple[int, int, int, int]]:
    """(row start, first new row, col start, first new col) of each block; overlapped parts are skipped."""
    for r, r_new in plan.spans(n, plan.rows):
        for c, c_new in plan.spans(m, plan.cols):
            yield r, r_new, c, c_new


@dataclass
class _Thresholds:
    """Per query: the score ``value`` of its best positive and that positive's gallery index ``first``;
    items ranked before it score higher, or score equal with an index below ``first``."""

    value: torch.Tensor
    first: torch.Tensor


def _image_thresholds(own: torch.Tensor, c2i: torch.Tensor, n_img: int) -> _Thresholds:
    """i2t thresholds from the scores ``own[c]`` of each caption with its image: per image the best
    (NaN if any is NaN, as ``amax`` gives) and the lowest caption index with that score."""
    m = len(c2i)
    order = torch.argsort(c2i, stable=True)
    counts = torch.bincount(c2i, minlength=n_img)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(m, device=c2i.device) - starts[c2i[order]]
    width = max(1, int(counts.max()) if m else 1)
    table = torch.full((n_img, width), -math.inf, device=own.device)
    index = torch.full((n_img, width), m, dtype=torch.long, device=own.device)
    table[c2i[order], slot] = own[order]
    index[c2i[order], slot] = order
    best = table.amax(1)
    first = torch.where(table == best[:, None], index, m).amin(1)
    return _Thresholds(best, first)


def _both_thresholds(scores: torch.Tensor, c2i: torch.Tensor, n_img: int) -> dict[str, _Thresholds]:
    """Both directions' thresholds from the scores ``scores[c]`` of each caption with its image."""
    return {"i2t": _image_thresholds(scores, c2i, n_img), "t2i": _Thresholds(scores, c2i)}


#: the smallest positive normal float32: thresholds below it in magnitude (zeros, subnormals) are
#: compared with their ties counted explicitly, so flushing subnormals to zero cannot change a count
_TINY = torch.finfo(torch.float32).tiny


def _float_counts(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """int64 sums over ``dim`` of a 1.0/0.0 float32 mask: float32 while exact (below 2**24), else float64."""
    return mask.sum(dim, dtype=torch.float32 if mask.shape[dim] < 1 << 24 else torch.float64).long()


def _count_before(
    blk: torch.Tensor, thr: _Thresholds, queries: slice, g0: int, qdim: int, scratch: torch.Tensor
) -> torch.Tensor:
    """Per query of the block (along ``qdim``): the items of this block ranked before its threshold.

    ``blk`` holds gallery items ``g0, g0 + 1, ...`` along the other dimension; ``scratch`` is a
    float32 tensor of its shape, overwritten.  Comparisons with NaN are false, as in
    :func:`~xmodalzoo.eval.metrics.first_positive_ranks`.

    One comparison per score: for a query whose threshold index lies past the block, every tie ranks
    before it, and ``score >= value`` is taken as ``score > nextafter(value, -inf)`` (exact for every
    float but -inf, zero and subnormals, which take the explicit tie count).  Only the queries whose
    threshold index falls inside the block (or whose value is one of those) count their ties apart.
    """
    value, first = thr.value[queries], thr.first[queries]
    gdim = 1 - qdim
    size = blk.shape[gdim]
    past = first >= g0 + size
    step = past & (value.abs() >= _TINY) & (value != -math.inf)
    cut = torch.where(step, torch.nextafter(value, value.new_tensor(-math.inf)), value)
    # comparing into float32 and summing floats is several times faster than through a bool mask
    above = torch.gt(blk, cut[:, None] if qdim == 0 else cut[None, :], out=scratch)
    before = _float_counts(above, gdim)
    tied = ((first > g0) & ~step).nonzero()[:, 0]  # ties at indices g0 .. first - 1 still to count
    if len(tied):
        lo, hi = int(tied[0]), int(tied[-1]) + 1
        before[lo:hi] += _count_ties(blk, scratch, value, first, step, lo, hi, g0, qdim)
    return before


def _count_ties(
    blk: torch.Tensor, scratch: torch.Tensor, value: torch.Tensor, first: torch.Tensor, step: torch.Tensor,
    lo: int, hi: int, g0: int, qdim: int,
) -> torch.Tensor:
    """For queries ``lo .. hi - 1`` of :func:`_count_before`: the ties with their threshold at gallery
    indices ``g0 .. first - 1`` of the block (0 for the queries it already counted exactly).

    Ties are counted, not located: a query whose threshold item lies past the block counts them all;
    one whose threshold item lies inside it has that item as its only tie, as a rule, and then none
    before it.  Only the queries with other ties have their positions looked up.
    """
    gdim = 1 - qdim
    size = blk.shape[gdim]
    sub = blk.narrow(qdim, lo, hi - lo)  # usually a contiguous run of queries: a view, no copy
    v, f = value[lo:hi], first[lo:hi]
    wanted = (f > g0) & ~step[lo:hi]
    eq = torch.eq(sub, v[:, None] if qdim == 0 else v[None, :], out=scratch.narrow(qdim, lo, hi - lo))
    ties = _float_counts(eq, gdim)
    inside = wanted & (f < g0 + size)
    if not bool(inside.any()):
        return torch.where(wanted, ties, 0)
    q_in = inside.nonzero()[:, 0]
    own = sub[q_in, f[q_in] - g0] if qdim == 0 else sub[f[q_in] - g0, q_in]
    others = ties.clone()
    others[q_in] -= (own == v[q_in]).long()
    out = torch.where(wanted & ~inside, ties, 0)
    located = inside & (others > 0)  # ties besides the threshold item: which side of it are they?
    which = located.nonzero()[:, 0]
    if len(which):
        vl = v[which]
        at = (sub.index_select(qdim, which) == (vl[:, None] if qdim == 0 else vl[None, :])).nonzero()
        q, g = which[at[:, qdim]], at[:, gdim] + g0
        q = q[g < f[q]]
        out.index_add_(0, q, torch.ones_like(q))
    return out


def _same_scores(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


#: half-width of the window kept around each first-estimate threshold, relative to the larger of
#: the threshold's magnitude and the largest first-estimate score: differences between two float32
#: GEMM kernels' roundings of one score are far smaller (about 1e-7 of it, D = 1024)
WINDOW_REL = 2.0**-12
#: at most this many window entries per query (on average; besides a floor of 2**16): more (many
#: scores tied with the thresholds) and the evaluator recounts instead
WINDOW_PER_QUERY = 64


def _use_window(device: torch.device) -> bool:
    """Whether the evaluator keeps the scores near each first-estimate threshold (see
    :class:`_Window`): on GPUs, whose GEMM kernels round a score differently by block shape; on the
    CPU every backend keeps a score's bits (tests/test_gemm.py), so a window would only cost time."""
    return device.type != "cpu"


class _Window:
    """The scores within a small window around each query's first-estimate threshold, so the rank
    counts can be corrected to the exact thresholds after one pass (instead of a second pass).

    A query's count of items ranked before its threshold can only change, when the threshold moves
    from ``(v, f)`` (first estimate) to ``(v', f')`` (the block scores), for items scoring between
    ``v`` and ``v'``: with ``|fl(v' - v)| <= t`` (the window's half-width, see :meth:`collect`),
    every such item was kept, and the correction is the number of kept items ranked before
    ``(v', f')`` minus those ranked before ``(v, f)``.  A threshold that moved further (or to NaN),
    or more kept scores than the cap, and :meth:`correct` refuses: the caller then counts again.
    """

    def __init__(self, thresholds: dict[str, _Thresholds], approx: torch.Tensor, cap: int) -> None:
        finite = approx[torch.isfinite(approx)]
        scale = float(finite.abs().max()) if finite.numel() else 1.0
        self.thresholds = thresholds
        #: per direction: the windows' half-widths (-1, an empty window, around an infinite or NaN
        #: threshold: such a one may only stay where it is)
        self.halves = {}
        for name, thr in thresholds.items():
            half = WINDOW_REL * torch.maximum(thr.value.abs(), thr.value.new_tensor(scale))
            self.halves[name] = torch.where(torch.isfinite(half), half, -1.0)
        self.cap, self.size, self.full = cap, 0, False
        self.entries: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {n: [] for n in thresholds}

    def collect(self, name: str, blk: torch.Tensor, queries: slice, g0: int, qdim: int, scratch: torch.Tensor) -> None:
        """Keep the scores of ``blk`` (queries along ``qdim``, gallery items from ``g0`` along the
        other) inside their query's window; ``scratch`` (float32, of ``blk``'s shape) is overwritten.

        A score s is inside when ``|fl(s - v)| <= half``: rounding is monotone, so every score
        between v and a new threshold v' with ``|fl(v' - v)| <= half`` (what :meth:`correct`
        checks) is inside.  The kept scores are counted before they are listed, so their indices
        never take more than the cap's memory."""
        if self.full:
            return
        value, half = self.thresholds[name].value[queries], self.halves[name][queries]
        value, half = (value[:, None], half[:, None]) if qdim == 0 else (value[None, :], half[None, :])
        near = torch.sub(blk, value, out=scratch)
        near.abs_()
        torch.le(near, half, out=near)  # 1.0 inside (NaN: never), 0.0 outside
        kept = int(_float_counts(near, 1 - qdim).sum())
        self.size += kept
        if self.size > self.cap:
            self.full, self.entries = True, {}
            return
        if kept:
            at = near.nonzero()
            score = blk[at[:, 0], at[:, 1]]
            self.entries[name].append((at[:, qdim] + queries.start, at[:, 1 - qdim] + g0, score))

    def correct(self, before: dict[str, torch.Tensor], new: dict[str, _Thresholds]) -> bool:
        """Move each direction's counts from the window's thresholds to the ``new`` ones in place;
        False (counts untouched) where the window cannot prove that exact."""
        if self.full:
            return False
        old = self.thresholds
        for name, half in self.halves.items():
            v, was = new[name].value, old[name]
            same = (v == was.value) | (torch.isnan(v) & torch.isnan(was.value))
            unmoved = same & (new[name].first == was.first)  # e.g. -inf: an image without captions
            if not bool((unmoved | ((v - was.value).abs() <= half)).all()):
                return False
        for name, parts in self.entries.items():
            if not parts:
                continue
            q, g, score = (torch.cat(t) for t in zip(*parts))

            def ranked_before(thr: _Thresholds) -> torch.Tensor:
                v, f = thr.value[q], thr.first[q]
                return ((score > v) | ((score == v) & (g < f))).long()

            before[name].index_add_(0, q, ranked_before(new[name]) - ranked_before(old[name]))
        return True


def _label_counts(
    q_lab: torch.Tensor, g_lab: torch.Tensor, zetas: Sequence[int], max_bytes: int
) -> torch.Tensor:
    """(queries, len(zetas)) number of gallery items within Hamming distance ζ of each query."""
    n, m = q_lab.shape[0], g_lab.shape[0]
    rows = max(1, max_bytes // max(1, m * 24))
    out = torch.empty(n, len(zetas), dtype=torch.long, device=q_lab.device)
    for r in range(0, n, rows):
        dist = M.hamming_distances(q_lab[r : r + rows], g_lab)
        for i, z in enumerate(zetas):
            out[r : r + rows, i] = (dist <= z).sum(1)
    return out


def _positive_counts(pos: torch.Tensor, max_bytes: int = 1 << 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives per caption and per image of a (captions × images) bool matrix.

    A plain ``sum`` of a bool tensor first casts all of it to int64 (8 bytes per entry: 25 GB at
    25K × 125K), so the matrix is summed in chunks of rows: on the CPU 255 rows at a time, whose
    column sums fit in bytes and need no cast (the cast costs far more than the counting); elsewhere
    (a loop of small launches costs more there) in chunks of whole rows whose int64 cast fits
    ``max_bytes``."""
    m, n = pos.shape
    if pos.device.type != "cpu":
        return _positive_counts_wide(pos, max(1, max_bytes // (8 * max(n, 1))))
    pos = pos.contiguous()
    per_caption = torch.empty(m, dtype=torch.long, device=pos.device)
    per_image = torch.zeros(n, dtype=torch.long, device=pos.device)
    for r in range(0, m, 255):
        part = pos[r : r + 255].view(torch.uint8)
        per_caption[r : r + 255] = part.sum(1, dtype=torch.int32)
        per_image += part.sum(0, dtype=torch.uint8)
    return per_caption, per_image


def _positive_counts_wide(pos: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_positive_counts` in chunks of ``rows`` rows, each summed (cast) whole."""
    m, n = pos.shape
    per_caption = torch.empty(m, dtype=torch.long, device=pos.device)
    per_image = torch.zeros(n, dtype=torch.long, device=pos.device)
    for r in range(0, m, rows):
        part = pos[r : r + rows].long()
        per_caption[r : r + rows] = part.sum(1)
        per_image += part.sum(0)
        del part
    return per_caption, per_image


def _pair_rows(device: torch.device, scorer: BlockScorer) -> int:
    """Images per chunk of the first scoring of the positive pairs (see :data:`GPU_PAIR_ROWS`)."""
    if device.type != "cpu":
        return GPU_PAIR_ROWS
    # on oneDNN (its thread team runs every block) 64-image chunks pay: 14 → 6.5 ms at 1K × 5K; not
    # for sets, whose blocks are K·K' products per pair (mostly off the pairs wanted): 16-image
    # chunks, 80 pairs, at 1K × 5K mil_max K = 4 26 → 15 ms, match_prob J = 7 105 → 46 ms
    if scorer.uses_gemm and cpu_backend() == "onednn" and scorer.kq * scorer.kg == 1:
        return 4 * MIN_BLOCK
    return MIN_BLOCK


def _ranks_decide_hits(name: str, own: torch.Tensor, counts: torch.Tensor, c2i: torch.Tensor) -> bool:
    """Whether every query of direction ``name`` has no positive, or one: the single gallery item its
    rank is counted against (its caption's image for t2i; an image's only caption for i2t).  Then
    R-Precision and mAP@R (R = 1) are whether that rank is 1, and the direction needs no top k.
    ``own`` (captions,): whether each caption's own image is among its positives."""
    if counts.numel() == 0 or int(counts.max()) > 1:
        return bool(counts.numel() == 0)
    if name == "t2i":
        return bool(((counts == 0) | own).all())
    n = len(counts)
    captions = torch.bincount(c2i, minlength=n)
    own_images = torch.bincount(c2i, weights=own.double(), minlength=n)
    return bool(((counts == 0) | ((captions == 1) & (own_images == 1))).all())


def _positives_are_pairs(own: torch.Tensor, per_caption: torch.Tensor) -> bool:
    """Whether every positive of the (captions × images) mask is a caption with its own image, from
    ``own`` (whether each caption's own image is a positive) and the positives per caption.

    Then each query's best positive is its rank threshold (or scores below it), and a query whose
    threshold ranks past R (its number of positives) has no positive in its top R: R-Precision and
    mAP@R are 0 whatever its top k, which therefore need not be kept (sort position ≥ rank count + 1:
    NaN scores sort first but are never counted)."""
    return int(own.sum()) == int(per_caption.sum())


def _top_distances(q_lab: torch.Tensor, g_lab: torch.Tensor, top: torch.Tensor, max_bytes: int) -> torch.Tensor:
    """(queries, k) Hamming distance between each query's labels and those of its top-k items."""
    n, k = top.shape
    a, b = q_lab != 0, g_lab != 0
    rows = max(1, max_bytes // max(1, k * a.shape[1] * 2))
    out = torch.empty(n, k, dtype=torch.long, device=top.device)
    for r in range(0, n, rows):
        out[r : r + rows] = (a[r : r + rows, None, :] != b[top[r : r + rows]]).sum(-1)
    return out


@dataclass
class _Direction:
    """What one direction needs for its precision metrics: positives (queries × gallery, bool) and/or
    labels, and the number of positives of each query (per metric)."""

    positives: torch.Tensor | None
    q_lab: torch.Tensor | None
    g_lab: torch.Tensor | None
    counts: dict[str, torch.Tensor]
    #: R-Precision and mAP@R follow from the ranks (see :func:`_ranks_decide_hits`): no top k kept
    from_ranks: bool = False
    #: a query whose best positive ranks past its R has no hit (see :func:`_positives_are_pairs`):
    #: its top k is not kept once its rank count reaches R, and its hits are taken as none
    pruned: bool = False

    @property
    def needs_top(self) -> bool:
        return not self.from_ranks or self.q_lab is not None

    @property
    def k(self) -> int:
        return max(1, max((int(c.max()) for c in self.counts.values() if c.numel()), default=1))


def _precision(
    d: _Direction, top: torch.Tensor | None, ranks: torch.Tensor, zetas: Sequence[int], max_bytes: int
) -> dict[str, torch.Tensor]:
    """Per-query R-Precision / mAP@R / PMRP from each query's top k (stable order), or from its 1-based
    rank where one positive decides them (``d.from_ranks``)."""
    out: dict[str, torch.Tensor] = {}
    if d.positives is not None and d.from_ranks:
        hit = torch.where(d.counts["pos"] > 0, (ranks == 1).double(), math.nan)
        out["r_precision"], out["map_at_r"] = hit, hit.clone()
    elif d.positives is not None:
        assert top is not None
        if d.pruned:  # a pruned query's top k may hold no item at all: read item 0 and drop it
            keep = (ranks <= d.counts["pos"])[:, None]
            hits = d.positives.gather(1, torch.where(keep, top, 0)) & keep
        else:
            hits = d.positives.gather(1, top)
        out["r_precision"] = M._r_precision_sorted(hits, d.counts["pos"])
        out["map_at_r"] = M._map_at_r_sorted(hits, d.counts["pos"])
    if d.q_lab is not None and d.g_lab is not None:
        assert top is not None
        dist = _top_distances(d.q_lab, d.g_lab, top, max_bytes)
        for z in zetas:
            out[f"pmrp_z{z}"] = M._r_precision_sorted(dist <= z, d.counts[f"z{z}"])
    return out


@torch.no_grad()
def stream_fold_metrics(
    sim: Similarity,
    image_emb: Embedding,
    caption_emb: Embedding,
    caption_to_image: torch.Tensor | np.ndarray,
    *,
    positives: torch.Tensor | None = None,
    image_labels: torch.Tensor | None = None,
    caption_labels: torch.Tensor | None = None,
    zetas: Sequence[int] = (0, 1, 2),
    max_bytes: int = 1 << 30,
    device: torch.device | str = "cpu",
    seed: int = 0,
    hot_bytes: int | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Every metric of one fold, and the 1-based ranks {"i2t", "t2i"}, without the score matrix.

    The same values as :func:`~xmodalzoo.eval.evaluate.fold_metrics` on
    ``similarity_matrix(sim, image_emb, caption_emb, seed=seed)``.  ``caption_to_image`` (captions,)
    gives each caption's image; ``positives`` (captions × images, bool) adds R-Precision and mAP@R;
    ``image_labels`` / ``caption_labels`` (multi-hot) add PMRP for each ζ in ``zetas``.
    ``hot_bytes`` caps one block (default :data:`HOT_BLOCK_BYTES` on the CPU,
    :data:`GPU_HOT_BLOCK_BYTES` elsewhere, and a fresh product per block kept within
    :data:`~xmodalzoo.similarity.gemm.FRESH_PRODUCT_BYTES`; a given ``hot_bytes`` is taken as it
    is); ``max_bytes`` bounds it in any case.
    """
    device = torch.device(device)
    was_training = sim.training
    sim.eval()
    try:
        scorer = prepare_scorer(sim, image_emb, caption_emb, device, seed)
        return _stream(scorer, torch.as_tensor(caption_to_image, device=device).long(), positives,
                       image_labels, caption_labels, [int(z) for z in zetas], max_bytes, hot_bytes)
    finally:
        sim.train(was_training)


def _stream(
    scorer: BlockScorer, c2i: torch.Tensor, positives: torch.Tensor | None, image_labels: torch.Tensor | None,
    caption_labels: torch.Tensor | None, zetas: list[int], max_bytes: int, hot_bytes: int | None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    n, m = scorer.n, scorer.m
    device = c2i.device
    if len(c2i) != m:
        raise ValueError(f"caption_to_image has {len(c2i)} entries for {m} caption embeddings")
    captions = torch.arange(m, device=device)
    labelled = image_labels is not None and caption_labels is not None and len(zetas) > 0
    directions: dict[str, _Direction] = {}
    pos = None if positives is None else positives.to(device).bool()
    if pos is not None and tuple(pos.shape) != (m, n):
        raise ValueError(f"positives has shape {tuple(pos.shape)}; expected (captions, images) = {(m, n)}")
    img_lab = image_labels.to(device) if labelled else None  # type: ignore[union-attr]
    cap_lab = caption_labels.to(device) if labelled else None  # type: ignore[union-attr]
    pos_counts = _positive_counts(pos, max_bytes) if pos is not None else None
    own_positive = None if pos is None else pos[captions, c2i]  # whether caption c's own image is a positive
    for name, p, q_lab, g_lab in (("i2t", None if pos is None else pos.t(), img_lab, cap_lab),
                                  ("t2i", pos, cap_lab, img_lab)):
        if p is None and not labelled:
            continue
        counts: dict[str, torch.Tensor] = {}
        from_ranks = False
        if p is not None and pos_counts is not None and own_positive is not None:
            counts["pos"] = pos_counts[1] if name == "i2t" else pos_counts[0]
            from_ranks = _ranks_decide_hits(name, own_positive, counts["pos"], c2i)
        if labelled:
            within = _label_counts(q_lab, g_lab, zetas, max_bytes)  # type: ignore[arg-type]
            counts.update({f"z{z}": within[:, i] for i, z in enumerate(zetas)})
        directions[name] = _Direction(p, q_lab, g_lab, counts, from_ranks)
    use_window = _use_window(device)
    # top-k pruning relies on counts against the final thresholds, known only without a window; it
    # applies to i2t in practice (with pairs-only positives a caption has R <= 1: ranks decide t2i)
    if own_positive is not None and pos_counts is not None and not use_window \
            and _positives_are_pairs(own_positive, pos_counts[0]):
        for d in directions.values():
            d.pruned = d.needs_top and d.q_lab is None

    # thresholds from a first scoring of the positive pairs (caption c with its image c2i[c])
    pair_bytes = scorer.sim.pair_bytes(scorer.query, scorer.gallery)
    # captions grouped by image: a chunk of `rows` images' captions is one `rows`-row block
    per_image = -(-m // max(n, 1))
    rows = _pair_rows(device, scorer)
    width = int(max(MIN_BLOCK, min(256, rows * per_image, math.isqrt(max(1, max_bytes // max(pair_bytes, 4))))))
    approx = scorer.pairs(c2i, captions, width=width) if m else torch.empty(0, device=device)
    thresholds = _both_thresholds(approx, c2i, n)
    # a direction whose ranks decide its hits keeps no top k, unless NaN scores turn up: plan for one
    k_rows = directions["i2t"].k if "i2t" in directions else 0
    k_cols = directions["t2i"].k if "t2i" in directions else 0
    cpu = device.type == "cpu"
    plan = plan_stream(n, m, pair_bytes, k_rows, k_cols, max_bytes,
                       hot_bytes if hot_bytes is not None else HOT_BLOCK_BYTES if cpu else GPU_HOT_BLOCK_BYTES,
                       BLOCK_COLS if cpu else GPU_BLOCK_COLS, scorer.fresh_pair_bytes if hot_bytes is None else 0)
    queries = {"i2t": n, "t2i": m}
    tops = {name: RunningTopK(d.k, queries[name], device)
            for name, d in directions.items() if d.needs_top}
    before = {"i2t": torch.zeros(n, dtype=torch.long, device=device),
              "t2i": torch.zeros(m, dtype=torch.long, device=device)}
    exact = torch.empty_like(approx)

    scratch = torch.empty(plan.rows * plan.cols, device=device)

    window = None
    if use_window:
        cap = min(WINDOW_PER_QUERY * (n + m) + (1 << 16), max(1, max_bytes // 64))  # 36 bytes per kept score
        window = _Window(thresholds, approx, cap)

    def count(blk: torch.Tensor, rows: slice, cols: slice, thr: dict[str, _Thresholds],
              keep: _Window | None = None) -> None:
        above = scratch[: blk.numel()].view(blk.shape)
        before["i2t"][rows] += _count_before(blk, thr["i2t"], rows, cols.start, 0, above)
        before["t2i"][cols] += _count_before(blk, thr["t2i"], cols, rows.start, 1, above)
        if keep is not None:
            keep.collect("i2t", blk, rows, cols.start, 0, above)
            keep.collect("t2i", blk, cols, rows.start, 1, above)

    def wanted(name: str, queries: slice) -> torch.Tensor | None:
        """The queries whose top k is still needed: those whose count so far is below their R."""
        d = directions[name]
        return before[name][queries] < d.counts["pos"][queries] if d.pruned else None

    def merge(blk: torch.Tensor, rows: slice, cols: slice, names: Sequence[str]) -> None:
        """Merge the block into the named directions' top k (after :func:`count` of the block)."""
        if "i2t" in names:
            tops["i2t"].merge(rows, blk, cols.start, wanted("i2t", rows))
        if "t2i" in names:
            tops["t2i"].merge(cols, blk.t(), rows.start, wanted("t2i", cols))

    def scored_blocks() -> Iterator[tuple[torch.Tensor, slice, slice]]:
        """Each block's new scores (overlapped parts skipped, in the reused product buffer: done with
        one before the next) and the rows and columns they cover."""
        for r, r_new, c, c_new in _blocks(plan, n, m):
            blk = scorer.block(slice(r, r + plan.rows), slice(c, c + plan.cols), reuse=True)
            yield blk[r_new - r :, c_new - c :], slice(r_new, r + plan.rows), slice(c_new, c + plan.cols)

    from_ranks = [name for name, d in directions.items() if not d.needs_top]
    nan_seen = torch.zeros((), dtype=torch.bool, device=device)
    for blk, rows, cols in scored_blocks():
        count(blk, rows, cols, thresholds, window)
        own = c2i[cols]
        inside = (own >= rows.start) & (own < rows.stop)
        exact[captions[cols][inside]] = blk[own[inside] - rows.start, captions[cols][inside] - cols.start]
        merge(blk, rows, cols, list(tops))
        if from_ranks:
            nan_seen |= torch.isnan(blk.amax())
        del blk

    recount = not _same_scores(exact, approx)  # a kernel rounded the first estimate differently
    settled = _both_thresholds(exact, c2i, n) if recount else thresholds
    if recount and window is not None and window.correct(before, settled):
        recount = False
    del window
    # NaN scores sort first but rank after every number: the ranks no longer decide the hits
    late = from_ranks if bool(nan_seen) else []
    for name in late:
        directions[name].from_ranks = False
        tops[name] = RunningTopK(1, queries[name], device)
    # a pruned top k followed the counts against the first estimates: kept again, from the exact ones
    redo = [name for name in tops if recount and directions[name].pruned]
    for name in redo:
        tops[name] = RunningTopK(tops[name].k, queries[name], device)
    if recount:
        for counts in before.values():
            counts.zero_()
    if recount or late:
        for blk, rows, cols in scored_blocks():
            if recount:
                count(blk, rows, cols, settled)
            merge(blk, rows, cols, late + redo)

    # an image without captions has no positive: rank m + 1, as fold_metrics gives (its count, against
    # the threshold -inf, is the number of its scores that are not NaN)
    has_caption = torch.bincount(c2i, minlength=n) > 0
    ranks = {"i2t": torch.where(has_caption, before["i2t"] + 1, m + 1), "t2i": before["t2i"] + 1}
    per_query = {name: _precision(d, tops[name].indices() if name in tops else None, ranks[name], zetas, max_bytes)
                 for name, d in directions.items()}
    return summarise_fold(ranks, per_query, zetas if labelled else []), {k: v.cpu() for k, v in ranks.items()}


__all__ = ["GPU_HOT_BLOCK_BYTES", "HOT_BLOCK_BYTES", "plan_stream", "stream_fold_metrics"]
