"""Row search backends: the k best gallery rows by inner product for every query row.

The candidate stage of an index (:mod:`xmodalzoo.search.searcher`) asks a backend for the ``k``
gallery rows with the largest inner product with each query row.  ``engine`` is brute force through
the chunked similarity engine (exact, within its memory budget); ``faiss-flat`` is faiss's exact
``IndexFlatIP``; ``faiss-ivf`` (inverted lists) and ``faiss-hnsw`` (a graph) are approximate: their
recall against brute force is measured by ``tests/test_search_faiss.py`` and ``benchmarks/search_speed.py``.
faiss is optional (``pip install 'xmodalzoo[search]'``, i.e. ``faiss-cpu``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..embeddings import PointEmbedding
from ..errors import MissingDependencyError, UserError
from ..similarity.dot import Dot
from ..similarity.engine import DEFAULT_MAX_BYTES, topk

#: every backend name :func:`make_backend` knows
BACKENDS = ("engine", "faiss-flat", "faiss-ivf", "faiss-hnsw")


class RowSearch(Protocol):
    """The k best gallery rows per query row by inner product."""

    #: whether the k rows returned are exactly the k best (ties aside)
    exact: bool

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and row indices (R, k), best first, of query rows ``queries`` (R, D)."""
        ...


class EngineRows:
    """Brute force: every inner product, reduced to its top k by :func:`xmodalzoo.similarity.engine.topk`."""

    exact = True

    def __init__(self, rows: torch.Tensor, *, device: torch.device, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.rows = PointEmbedding(rows.float().to(device))
        self.device = device
        self.max_bytes = max_bytes
        self.dot = Dot()

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return topk(self.dot, PointEmbedding(queries.float()), self.rows, k, max_bytes=self.max_bytes,
                    device=self.device)


@dataclass(frozen=True)
class FaissOptions:
    """Settings of the faiss backends (defaults chosen for galleries of 10⁴–10⁶ rows)."""

    #: IVF: number of inverted lists (None: 4·√rows, at least 1) and lists visited per query (None: lists/8)
    nlist: int | None = None
    nprobe: int | None = None
    #: HNSW: neighbours per node, and the candidate list size when building and searching
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    #: faiss's OpenMP threads (None: faiss's default, all cores)
    threads: int | None = None


def import_faiss() -> Any:
    """The ``faiss`` module, or a one-line error saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError(
            "the faiss backends need faiss: pip install 'xmodalzoo[search]' (or pip install faiss-cpu)"
        ) from None
    return faiss


class FaissRows:
    """A faiss index over the gallery rows: ``flat`` (exact ``IndexFlatIP``), ``ivf`` or ``hnsw``."""

    def __init__(self, rows: torch.Tensor, kind: str, options: FaissOptions | None = None) -> None:
        faiss = import_faiss()
        self.faiss = faiss
        self.kind = kind
        self.options = options or FaissOptions()
        self.exact = kind == "flat"
        if self.options.threads is not None:
            faiss.omp_set_num_threads(int(self.options.threads))
        x = _as_numpy(rows)
        n, d = x.shape
        metric = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = self.options.nlist or max(1, int(4 * math.sqrt(n)))
            nlist = min(nlist, n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, metric)
            index.train(x)
            index.nprobe = self.options.nprobe or max(1, nlist // 8)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.options.hnsw_m, metric)
            index.hnsw.efConstruction = self.options.ef_construction
        else:
            raise UserError(f"unknown faiss index kind {kind!r}; choose flat, ivf or hnsw")
        index.add(x)
        self.index = index

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.options.ef_search, k)
        scores, ids = self.index.search(_as_numpy(queries), k)
        ids_t = torch.from_numpy(ids).long()
        scores_t = torch.from_numpy(scores).float()
        # approximate indexes may find fewer than k rows: -1 ids; give them the lowest score
        scores_t = scores_t.masked_fill(ids_t < 0, float("-inf"))
        return scores_t, ids_t


def _as_numpy(x: torch.Tensor) -> Any:
    return x.detach().float().cpu().contiguous().numpy()


def make_backend(name: str, rows: torch.Tensor, *, device: torch.device, max_bytes: int = DEFAULT_MAX_BYTES,
                 faiss_options: FaissOptions | None = None) -> RowSearch:
    """The row search called ``name`` (one of :data:`BACKENDS`) over gallery rows (R, D)."""
    if name == "engine":
        return EngineRows(rows, device=device, max_bytes=max_bytes)
    if name.startswith("faiss-") and name[len("faiss-"):] in ("flat", "ivf", "hnsw"):
        return FaissRows(rows, name[len("faiss-"):], faiss_options)
    raise UserError(f"unknown search backend {name!r}; choose one of {', '.join(BACKENDS)}")
