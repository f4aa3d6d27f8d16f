"""The similarity interface: (query batch, gallery batch) -> (N, M) scores, higher is more similar."""
from __future__ import annotations

import torch
from torch import nn

from ..embeddings import Embedding


class Similarity(nn.Module):
    """Base class for similarities.

    Subclasses implement :meth:`forward`.  A similarity may own learnable parameters (they are part
    of the model and saved with it).  Two optional hooks serve the chunked engine:

    * :meth:`prepare` runs once on a whole query or gallery set before chunking (normalising,
      drawing seeded samples, ...), so a chunked result equals the unchunked one;
    * :meth:`pair_bytes` estimates the working memory one (query, gallery) pair needs.
    """

    #: embedding classes this similarity accepts
    accepts: tuple[type[Embedding], ...] = (Embedding,)

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def prepare(self, emb: Embedding, generator: torch.Generator | None = None) -> Embedding:
        """Turn a full set of embeddings into what :meth:`forward` reads at inference."""
        return emb

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        """Bytes of intermediate tensors per (query, gallery) pair in :meth:`forward`."""
        return 4

    def check(self, query: Embedding, gallery: Embedding) -> None:
        """Raise a clear error when given an embedding type this similarity cannot read."""
        for role, emb in (("query", query), ("gallery", gallery)):
            if not isinstance(emb, self.accepts):
                names = " or ".join(c.__name__ for c in self.accepts)
                raise TypeError(f"{type(self).__name__} needs {names} embeddings; the {role} is {type(emb).__name__}")
