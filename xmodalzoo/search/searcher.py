"""Top-k search of one gallery under any similarity: candidates by inner product, then an exact re-rank.

For a similarity with :meth:`~xmodalzoo.similarity.base.Similarity.search_vectors`, the query and
gallery items become rows (E per item: 1 for points and Gaussians, K for sets).  A row backend
(:mod:`.backends`) finds each query row's best ``C·E_g`` gallery rows; a query item's candidates
are the ``C`` gallery items whose best retrieved row pair scores highest; they are re-ranked with the
similarity itself (on the sets :meth:`Similarity.prepare` gave, seeded like the engine), and the
best ``k`` are kept, ties to the lower gallery index.

Exactness: when the candidate score is an increasing function of the similarity (``exact`` vectors:
cosine, dot, csd, mil_max, mean_cosine) and the backend is exact, the true top k are among the
candidates — for sets, the best row pair of a true top-k item is among its query row's best
``k·E_g`` rows, else ``k`` other items would score at least as high — so the result equals brute
force (up to the order of exact ties).  Otherwise (smooth-Chamfer, match probability, approximate
faiss indexes) the candidate stage has a recall, measured against brute force in the tests and in
``benchmarks/search_speed.py``.  A similarity without search vectors is searched by brute force
through :func:`xmodalzoo.similarity.engine.topk`.
"""
from __future__ import annotations

import math

import torch

from ..embeddings import Embedding
from ..similarity.base import SearchVectors, Similarity
from ..similarity.engine import DEFAULT_MAX_BYTES, topk
from ..similarity.scorer import BlockScorer
from .backends import FaissOptions, RowSearch, make_backend

#: extra candidates beyond k when the candidate stage is exact (they absorb rounding near ties)
EXACT_MARGIN = 16
#: queries re-ranked together (each against the union of their candidates)
RERANK_BLOCK = 16


def default_candidates(k: int, exact: bool) -> int:
    """Candidates re-ranked per query: ``k + 16`` when the candidate stage is exact, else ``max(10k, 100)``."""
    return k + EXACT_MARGIN if exact else max(10 * k, 100)


def prepare_set(sim: Similarity, emb: Embedding, device: torch.device, seed: int) -> Embedding:
    """``sim.prepare`` of a whole set on ``device``, with a generator seeded as the engine seeds it
    (``seed`` for queries, ``seed + 1`` for the gallery), so re-ranked scores equal the engine's."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return sim.prepare(emb.to(device), generator=gen)


class Searcher:
    """Searches one gallery: ``searcher.topk(query, k)`` → scores and gallery indices (N, k).

    ``backend`` is a row search name (``engine``, ``faiss-flat``, ``faiss-ivf``, ``faiss-hnsw``);
    ``max_bytes`` bounds the working memory of brute-force blocks and re-rank blocks.
    """

    def __init__(self, sim: Similarity, gallery: Embedding, *, backend: str = "engine",
                 device: torch.device | None = None, max_bytes: int = DEFAULT_MAX_BYTES, seed: int = 0,
                 faiss_options: FaissOptions | None = None) -> None:
        self.sim = sim.eval()
        self.gallery = gallery
        self.device = device or torch.device("cpu")
        self.max_bytes = max_bytes
        self.seed = seed
        self.backend_name = backend
        with torch.no_grad():
            self.gallery_vectors: SearchVectors | None = sim.search_vectors(gallery, "gallery")
            self.prepared = prepare_set(sim, gallery, self.device, seed + 1)
        self.rows: RowSearch | None = None
        if self.gallery_vectors is not None:
            flat = self.gallery_vectors.vectors.reshape(-1, self.gallery_vectors.vectors.shape[-1])
            self.rows = make_backend(backend, flat, device=self.device, max_bytes=max_bytes,
                                     faiss_options=faiss_options)

    @property
    def exact(self) -> bool:
        """Whether :meth:`topk` equals brute force (the candidate stage contains the true top k)."""
        if self.gallery_vectors is None or self.rows is None:
            return True
        return bool(self.gallery_vectors.exact and self.rows.exact)

    @torch.no_grad()
    def topk(self, query: Embedding, k: int, *, candidates: int | None = None,
             brute_force: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and gallery indices (N, k), best first, of each query's k best gallery items.

        ``candidates`` (default :func:`default_candidates`) is how many items per query the exact
        re-rank scores; ``brute_force`` scores every item through the engine instead.
        """
        m = len(self.gallery)
        k = max(0, min(int(k), m))
        qv = None if brute_force or self.rows is None else self.sim.search_vectors(query, "query")
        if qv is None or self.gallery_vectors is None or self.rows is None:
            return topk(self.sim, query, self.gallery, k, max_bytes=self.max_bytes, device=self.device, seed=self.seed)
        exact = bool(qv.exact and self.exact)
        c = max(k, candidates if candidates is not None else default_candidates(k, exact))
        if c >= m:  # the candidates would be the whole gallery
            return topk(self.sim, query, self.gallery, k, max_bytes=self.max_bytes, device=self.device, seed=self.seed)
        cand = self.candidates(qv, c)
        return self.rerank(query, cand, k)

    def candidates(self, qv: SearchVectors, c: int) -> torch.Tensor:
        """(N, c) gallery indices per query item (-1 = none), best candidate score first."""
        assert self.gallery_vectors is not None and self.rows is not None
        n, eq, d = qv.vectors.shape
        eg = self.gallery_vectors.rows_per_item
        total_rows = len(self.gallery) * eg
        scores, rows = self.rows.search(qv.vectors.reshape(n * eq, d).to(self.device), min(total_rows, c * eg))
        scores, rows = scores.cpu(), rows.cpu()
        owners = torch.where(rows >= 0, rows // eg, torch.full_like(rows, -1))
        if eq == 1 and eg == 1:
            return owners[:, :c]
        return best_owners(scores.reshape(n, -1), owners.reshape(n, -1), c)

    def rerank(self, query: Embedding, cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best of each query's candidates (N, C) by the similarity itself, ties to the lower index."""
        q = prepare_set(self.sim, query, self.device, self.seed)
        n, c = cand.shape
        m = len(self.gallery)
        pair = max(4, int(self.sim.pair_bytes(q[:1], self.prepared[:1])))
        # a block scores its queries against the union of their candidates (≤ block·C items): small
        # blocks keep that union far below the gallery; RERANK_BLOCK amortises the per-call overhead
        block = max(1, min(n, RERANK_BLOCK, int(math.sqrt(self.max_bytes / (pair * c)))))
        out_s = torch.empty(n, k)
        out_i = torch.empty(n, k, dtype=torch.long)
        # ascending gallery index first, so that a stable descending sort breaks ties to the lower index
        cand = torch.where(cand < 0, torch.full_like(cand, m), cand).sort(dim=1).values
        for r in range(0, n, block):
            rows = cand[r : r + block]
            union = torch.unique(rows[rows < m])
            # through the engine's scorer (GEMM form where declared): the bits of the brute-force blocks
            scorer = BlockScorer(self.sim, q[r : r + block], self.prepared[union.to(self.device)])
            scores = scorer.block(slice(0, scorer.n), slice(0, scorer.m)).cpu()
            pos = torch.searchsorted(union, rows.clamp(max=m - 1))
            pos = pos.clamp(max=len(union) - 1)
            s = scores.gather(1, pos).masked_fill(rows >= m, float("-inf"))
            s, order = s.sort(dim=1, descending=True, stable=True)
            out_s[r : r + block] = s[:, :k]
            out_i[r : r + block] = rows.gather(1, order[:, :k])
        return out_s, out_i


def best_owners(scores: torch.Tensor, owners: torch.Tensor, c: int) -> torch.Tensor:
    """(N, c) distinct items per row with the highest best score among their retrieved rows (-1 = none).

    ``scores``, ``owners`` (N, L): the retrieved rows of each query item and the gallery item holding
    each (-1 for a row the backend did not find).
    """
    s, order = scores.sort(dim=1, descending=True)
    o = owners.gather(1, order)
    o, perm = o.sort(dim=1, stable=True)  # groups by item, best row of each item first
    s = s.gather(1, perm)
    first = torch.ones_like(o, dtype=torch.bool)
    first[:, 1:] = o[:, 1:] != o[:, :-1]
    first &= o >= 0
    s = s.masked_fill(~first, float("-inf"))
    top, pos = s.topk(min(c, s.shape[1]), dim=1)
    picked = o.gather(1, pos)
    return torch.where(first.gather(1, pos), picked, torch.full_like(picked, -1))
