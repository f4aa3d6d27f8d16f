"""The similarity interface: (query batch, gallery batch) -> (N, M) scores, higher is more similar."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..embeddings import Embedding


@dataclass(frozen=True)
class SearchVectors:
    """Vectors whose inner products find search candidates for a similarity (see :meth:`Similarity.search_vectors`).

    ``vectors`` (N, E, D): E rows per item (E = 1 for points and Gaussians, K for sets of K).  The
    candidate score of a (query, gallery) pair is the largest inner product between a row of the query
    and a row of the gallery item.  ``exact`` is true when that score ranks gallery items exactly as the
    similarity does (it is an increasing function of the similarity): the search is then exact, not
    only its candidates, up to floating-point rounding between near-ties (which the re-rank with the
    similarity itself settles).  A search is exact when both its query and gallery vectors are.
    """

    vectors: torch.Tensor
    exact: bool

    def __post_init__(self) -> None:
        if self.vectors.dim() != 3:
            raise ValueError(f"SearchVectors.vectors must be (N, E, D), got {tuple(self.vectors.shape)}")

    @property
    def rows_per_item(self) -> int:
        return int(self.vectors.shape[1])


class Similarity(nn.Module):
    """Base class for similarities.

    Subclasses implement :meth:`forward`.  A similarity may own learnable parameters (they are part
    of the model and saved with it).  Optional hooks serve the chunked engine:

    * :meth:`prepare` runs once on a whole query or gallery set before chunking (normalising,
      drawing seeded samples, ...), so a chunked result equals the unchunked one;
    * :meth:`pair_bytes` estimates the working memory one (query, gallery) pair needs;
    * :meth:`gemm_operands` and :meth:`gemm_epilogue` declare the similarity as one dense matrix
      product plus a cheap elementwise/reduction epilogue: the engine then builds the operand
      matrices once per set and scores each block as ``epilogue(A[rows] @ B[cols].T)``.  Without
      them (the default) the engine calls :meth:`forward` on each block.

    One optional hook serves search indexes (:mod:`xmodalzoo.search`): :meth:`search_vectors` gives
    the vectors whose inner products retrieve candidates, which the index then re-ranks with
    :meth:`forward`; without it an index scores every gallery item (brute force through the engine).
    """

    #: embedding classes this similarity accepts
    accepts: tuple[type[Embedding], ...] = (Embedding,)

    #: True when :meth:`gemm_epilogue` gives the same bits on a row-strided product (``stride(1) ==
    #: 1``, rows further apart than their width) as on a packed one: only correctly rounded
    #: arithmetic (+, −, ×, ÷, sqrt) and max/min, no exp, log or sigmoid, whose vectorised and scalar
    #: kernels may round differently.  The engine then starts each product row on a 64-byte line
    #: (a faster GEMM on CPU, see :data:`~xmodalzoo.similarity.scorer.PRODUCT_ROW_ALIGN`).
    gemm_layout_free: bool = False

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def prepare(self, emb: Embedding, generator: torch.Generator | None = None) -> Embedding:
        """Turn a full set of embeddings into what :meth:`forward` reads at inference."""
        return emb

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        """Bytes of intermediate tensors per (query, gallery) pair in :meth:`forward`."""
        return 4

    def search_vectors(self, emb: Embedding, role: Literal["query", "gallery"]) -> SearchVectors | None:
        """Candidate vectors (N, E, D) of a set of embeddings as ``role``, or None (the default) when
        this similarity has none: an index then scores every gallery item with :meth:`forward`."""
        return None

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor | None:
        """Operand rows (len(emb) · K, D') of the similarity's GEMM form, or None when it has none.

        ``side`` is ``"query"`` or ``"gallery"`` (the two operands may differ, e.g. augmented
        vectors).  ``emb`` is a prepared set (see :meth:`prepare`); K rows per item (1 for points, the
        set size for sets, the samples for sampled embeddings), in item order.  Must be implemented
        together with :meth:`gemm_epilogue`; called at inference only (no gradients).
        """
        return None

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """(n, m) scores from the (n · K, m · K') products ``A[rows] @ B[cols].T`` of a block.

        May modify ``products`` in place (the engine owns it).  Only called when
        :meth:`gemm_operands` returned operands for both sides.
        """
        raise NotImplementedError(f"{type(self).__name__} declares gemm_operands but no gemm_epilogue")

    def check(self, query: Embedding, gallery: Embedding) -> None:
        """Raise a clear error when given an embedding type this similarity cannot read."""
        for role, emb in (("query", query), ("gallery", gallery)):
            if not isinstance(emb, self.accepts):
                names = " or ".join(c.__name__ for c in self.accepts)
                raise TypeError(f"{type(self).__name__} needs {names} embeddings; the {role} is {type(emb).__name__}")
