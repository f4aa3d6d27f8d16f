"""Score blocks of a prepared (query set, gallery set) pair: the one place a block's scores are computed.

A :class:`BlockScorer` prepares both sets once (seeded, see :meth:`Similarity.prepare`) and, when the
similarity declares a GEMM form (:meth:`Similarity.gemm_operands` / :meth:`Similarity.gemm_epilogue`),
builds the two operand matrices once; a block is then ``epilogue(A[rows] @ B[cols].T)``.  Otherwise
a block is ``sim(query[rows], gallery[cols])`` (the generic fallback).
"""
from __future__ import annotations

import torch

from ..embeddings import Embedding
from .base import Similarity
from .gemm import cpu_backend, matmul_t, writes_into_out

#: row stride, in elements, the reused product buffer rounds each block's width up to: a GEMM output
#: whose rows start on 64-byte lines multiplies up to 1.4× faster on CPU (MKL, 2 threads, cycling
#: through a gallery: 2,500 × 6,250 blocks at 8.8 ms/GFLOP with rows packed, 6.4 with rows 6,256
#: apart; 1,429 × 1,021 blocks at 8.3–8.9 against 6.0–6.7); same bits.
#: Only blocks at least 16 times as wide are padded, so the padding stays under 1/16 of the buffer.
PRODUCT_ROW_ALIGN = 16


class BlockScorer:
    """Scores (float32) of contiguous query × gallery blocks, or of listed (query, gallery) pairs."""

    def __init__(self, sim: Similarity, query: Embedding, gallery: Embedding) -> None:
        self.sim, self.query, self.gallery = sim, query, gallery
        self.n, self.m = len(query), len(gallery)
        self._buffer: torch.Tensor | None = None  # the product buffer of block(..., reuse=True)
        a = sim.gemm_operands(query, "query")
        b = sim.gemm_operands(gallery, "gallery") if a is not None else None
        if a is None or b is None:
            self.a = self.b = None
            self.kq = self.kg = 0
            return
        if a.shape[0] % max(self.n, 1) or b.shape[0] % max(self.m, 1) or a.shape[1] != b.shape[1]:
            raise ValueError(
                f"{type(sim).__name__}.gemm_operands gave {tuple(a.shape)} and {tuple(b.shape)} for "
                f"{self.n} queries and {self.m} gallery items: expected (items·K, D') with the same D'"
            )
        if a.dtype != b.dtype:  # e.g. float64 queries against a float32 gallery: as forward would
            dtype = torch.promote_types(a.dtype, b.dtype)
            a, b = a.to(dtype), b.to(dtype)
        self.a, self.b = a, b
        self.kq, self.kg = a.shape[0] // max(self.n, 1), b.shape[0] // max(self.m, 1)

    @property
    def uses_gemm(self) -> bool:
        """Whether blocks go through the similarity's declared GEMM form."""
        return self.a is not None

    @property
    def fresh_pair_bytes(self) -> int:
        """Bytes per (query, gallery item) pair of the product a block allocates afresh (oneDNN's,
        see :func:`~xmodalzoo.similarity.gemm.writes_into_out`); 0 when blocks multiply into the
        scorer's reused buffer, or have no GEMM form.  Planners keep such products within
        :data:`~xmodalzoo.similarity.gemm.FRESH_PRODUCT_BYTES`."""
        if self.a is None or self.b is None or not self.n or not self.m or writes_into_out(self.a[:1], self.b[:1]):
            return 0
        return self.kq * self.kg * self.a.dtype.itemsize

    def block(self, rows: slice, cols: slice, reuse: bool = False) -> torch.Tensor:
        """(len(rows), len(cols)) float32 scores of queries ``rows`` × gallery items ``cols`` (step-1 slices).

        With ``reuse``, the GEMM's product is written into one buffer the scorer keeps (grown as
        needed) instead of a fresh allocation: the caller must be done with a block before asking
        for the next.  Large fresh CPU buffers cost a page fault per 4 KiB on first touch, which for
        a whole-row block is a sizeable share of its GEMM (a backend that cannot write into a
        buffer, see :func:`~xmodalzoo.similarity.gemm.writes_into_out`, allocates anyway).  For a
        similarity whose epilogue is :attr:`~Similarity.gemm_layout_free`, the rows are then
        :data:`PRODUCT_ROW_ALIGN`-aligned: the block may be a row-strided view (``stride(1) == 1``).
        """
        if self.a is None or self.b is None:
            return self.sim(self.query[rows], self.gallery[cols]).float()
        r0, r1, _ = rows.indices(self.n)
        c0, c1, _ = cols.indices(self.m)
        a, b = self.a[r0 * self.kq : r1 * self.kq], self.b[c0 * self.kg : c1 * self.kg]
        if reuse and writes_into_out(a, b):
            width = b.shape[0]
            if self.sim.gemm_layout_free and width >= 16 * PRODUCT_ROW_ALIGN:
                # at most 1/16 more than the packed product: within every plan's bytes per pair
                width = -(-width // PRODUCT_ROW_ALIGN) * PRODUCT_ROW_ALIGN
            size = a.shape[0] * width
            if self._buffer is None or self._buffer.numel() < size:
                self._buffer = None  # free the old one first
                self._buffer = torch.empty(size, dtype=torch.result_type(a, b), device=a.device)
            out = self._buffer[:size].view(a.shape[0], width)[:, : b.shape[0]]
            prod = matmul_t(a, b, out=out)
        else:
            prod = matmul_t(a, b)
        return self.sim.gemm_epilogue(prod, r1 - r0, c1 - c0).float()

    def _gathered(self, qi: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        if self.a is None or self.b is None:
            return self.sim(self.query[qi], self.gallery[gi]).float()
        a = self.a.view(self.n, self.kq, -1)[qi].reshape(len(qi) * self.kq, -1)
        b = self.b.view(self.m, self.kg, -1)[gi].reshape(len(gi) * self.kg, -1)
        return self.sim.gemm_epilogue(matmul_t(a, b), len(qi), len(gi)).float()

    def pairs(self, qi: torch.Tensor, gi: torch.Tensor, width: int = 256, min_block: int = 16) -> torch.Tensor:
        """(P,) scores of the pairs (query ``qi[p]``, gallery item ``gi[p]``).

        Pairs are taken ``width`` at a time; each chunk scores one small block and reads its pairs
        from it: the block of the index ranges the chunk spans, when they are narrow (pairs listed
        in order, as captions grouped by image are), else the block of its distinct queries × its
        distinct gallery items, gathered.  Blocks have at least ``min_block`` rows and columns.  Each
        score thus comes from the same kind of kernel call as an engine block (on the CPU it equals
        the block's score bit for bit; callers that need that check it).
        """
        p = len(qi)
        out = torch.empty(p, dtype=torch.float32, device=qi.device)
        cpu = qi.device.type == "cpu"
        threads = torch.get_num_threads()
        if cpu and cpu_backend() != "onednn":  # MKL's thread team costs more than it saves on small blocks
            torch.set_num_threads(1)
        flat: list[torch.Tensor] = []  # the narrow chunks' blocks, flattened, read all at once below
        starts: list[tuple[int, int, int, int, int]] = []  # per narrow chunk: offset in flat, q0, g0, cols, pairs
        narrow = torch.zeros(p, dtype=torch.bool, device=qi.device)
        offset = 0
        try:
            for s, (q0, q1, g0, g1) in zip(range(0, p, width), _chunk_spans(qi, gi, width, self.n, self.m, min_block)):
                q, g = qi[s : s + width], gi[s : s + width]
                if q1 - q0 <= max(2 * min_block, len(q)) and g1 - g0 <= max(2 * min_block, len(g)):
                    flat.append(self.block(slice(q0, q1), slice(g0, g1)).reshape(-1))
                    starts.append((offset, q0, g0, g1 - g0, len(q)))
                    narrow[s : s + width] = True
                    offset += flat[-1].numel()
                    continue
                uq, iq = torch.unique(q, return_inverse=True)
                ug, ig = torch.unique(g, return_inverse=True)
                uq, ug = _padded(uq, min(min_block, self.n)), _padded(ug, min(min_block, self.m))
                out[s : s + width] = self._gathered(uq, ug)[iq, ig]
            if flat:
                per_chunk = torch.tensor(starts, device=qi.device)
                base, q0s, g0s, cols, _ = per_chunk.repeat_interleave(per_chunk[:, 4], dim=0).unbind(1)
                where = base + (qi[narrow] - q0s) * cols + (gi[narrow] - g0s)
                out[narrow] = torch.cat(flat)[where]
        finally:
            torch.set_num_threads(threads)
        return out


def _chunk_spans(
    qi: torch.Tensor, gi: torch.Tensor, width: int, n: int, m: int, min_size: int
) -> list[tuple[int, int, int, int]]:
    """Per chunk of ``width`` pairs: the [start, stop) ranges its queries and gallery items span,
    each widened to at least ``min_size`` items within the set (all chunks in one pass)."""
    p = len(qi)
    pad = -p % width
    spans = []
    for index, total in ((qi, n), (gi, m)):
        chunks = torch.cat([index, index[-1:].expand(pad)]).view(-1, width)
        lo, hi = chunks.amin(1), chunks.amax(1) + 1
        size = torch.clamp(hi - lo, min=min(min_size, total))
        lo = torch.clamp(torch.minimum(lo, total - size), min=0)
        spans.append((lo, lo + size))
    (q0, q1), (g0, g1) = spans
    return [tuple(row) for row in torch.stack([q0, q1, g0, g1], 1).tolist()]


def _padded(index: torch.Tensor, size: int) -> torch.Tensor:
    """``index`` repeated (its last entry) up to ``size`` entries."""
    pad = size - len(index)
    return torch.cat([index, index[-1:].expand(pad)]) if pad > 0 else index


def prepare_scorer(
    sim: Similarity, query: Embedding, gallery: Embedding, device: torch.device, seed: int
) -> BlockScorer:
    """Check, move and prepare both sets (query seeded with ``seed``, gallery with ``seed + 1``)."""
    sim.check(query, gallery)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    q = sim.prepare(query.to(device), generator=gen)
    gen.manual_seed(seed + 1)
    g = sim.prepare(gallery.to(device), generator=gen)
    return BlockScorer(sim, q, g)
