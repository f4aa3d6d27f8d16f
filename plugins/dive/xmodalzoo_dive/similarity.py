"""Set-to-set similarities of DivE: smooth-Chamfer (cosine and Euclidean), Chamfer, and the set form of
the match probability used in the paper's ablation.

Every one reads :class:`SetEmbedding` (N, K, D) — a :class:`PointEmbedding` counts as a set of one — and
computes a block with ONE (n·K) × (m·K') matmul of L2-normalised elements, reshaped to (n, K, m, K');
set sizes may differ between query and gallery.  Elements are normalised in :meth:`forward` (not in
``prepare``), so an engine block computes exactly what a direct call on the same rows computes.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import (
    ComponentConfig, Embedding, PointEmbedding, SearchVectors, SetEmbedding, Similarity, ordered_sum,
)


def set_vectors(emb: Embedding) -> torch.Tensor:
    """(N, K, D) unit vectors of a set embedding; a point embedding is a set of one."""
    x = emb.vectors[:, None, :] if isinstance(emb, PointEmbedding) else emb.vectors  # type: ignore[attr-defined]
    return F.normalize(x, dim=-1)


def set_size(emb: Embedding) -> int:
    return 1 if isinstance(emb, PointEmbedding) else int(emb.vectors.shape[1])  # type: ignore[attr-defined]


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt of a non-negative tensor with a zero (not infinite) gradient at 0."""
    tiny = torch.finfo(x.dtype).eps
    return torch.where(x > tiny, x.clamp(min=tiny).sqrt(), torch.zeros_like(x))


class SetSimilarity(Similarity):
    """Base class: the (n, K, m, K') element cosines of a query block and a gallery block."""

    accepts = (SetEmbedding, PointEmbedding)
    name = "set similarity"

    def cosines(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        q, g = set_vectors(query), set_vectors(gallery)
        (n, k, d), (m, kg, dg) = q.shape, g.shape
        if d != dg:
            raise ValueError(f"{self.name}: query dim {d} != gallery dim {dg}")
        return (q.reshape(n * k, d) @ g.reshape(m * kg, d).t()).view(n, k, m, kg)

    #: full-size (K × K') buffers alive at once in the no-grad forward (the cosines + one temporary)
    pair_buffers = 2

    def from_cosines(self, cos: torch.Tensor) -> torch.Tensor:
        """(n, m) scores from the (n, K, m, K') element cosines, which it may modify in place
        (no gradients); a subclass that implements it gets the engine's GEMM form."""
        raise NotImplementedError

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor | None:
        """The unit set elements (N·K, D), when :meth:`from_cosines` is implemented; else None."""
        if type(self).from_cosines is SetSimilarity.from_cosines:
            return None
        self.check(emb, emb)
        x = set_vectors(emb)
        return x.reshape(-1, x.shape[-1])

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """The (n·K, m·K') cosines reshaped to (n, K, m, K'), then :meth:`from_cosines`."""
        return self.from_cosines(products.view(n, products.shape[0] // n, m, products.shape[1] // m))

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        """``pair_buffers`` K × K' buffers plus the per-element partial reductions and the output."""
        k, kg = set_size(query), set_size(gallery)
        size = query.vectors.element_size()  # type: ignore[attr-defined]
        return size * (self.pair_buffers * k * kg + 2 * (k + kg) + 2)

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """The unit elements of each set: candidates are the items holding the elements closest to a
        query element, re-ranked with the set similarity (approximate: its score is not a maximum)."""
        self.check(emb, emb)
        return SearchVectors(set_vectors(emb).float(), exact=False)


def two_way_logsumexp_shifted(logits: torch.Tensor, scale: float, top: float) -> torch.Tensor:
    """:func:`two_way_logsumexp` for logits known to be at most ``top`` (up to rounding), in place.

    Both log-sum-exps share one exponential: with e = exp(ℓ − top) ≤ ~1 (no overflow),
    log Σ_y exp(ℓ) = top + log Σ_y e over either axis.  Overwrites ``logits``.
    """
    k, kg = logits.shape[1], logits.shape[3]
    e = logits.sub_(top).exp_()
    # sums over the short axes as ordered adds: block-shape independent, and far faster than a
    # reduction over an innermost axis of K' = 4
    rows = ordered_sum(e, 3).log_().sum(1).add_(top * k)  # Σ_x log Σ_y exp(ℓ)
    cols = ordered_sum(ordered_sum(e, 1).log_(), 2).add_(top * kg)  # Σ_y log Σ_x exp(ℓ)
    return rows.div_(scale * k).add_(cols.div_(scale * kg)).div_(2)


def two_way_logsumexp(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """½ [Σ_x log Σ_y exp(ℓ) / (scale·K) + Σ_y log Σ_x exp(ℓ) / (scale·K')] of logits ℓ (n, K, m, K') -> (n, m)."""
    k, kg = logits.shape[1], logits.shape[3]
    rows = torch.logsumexp(logits, dim=3).sum(1)  # over the query's elements x
    cols = torch.logsumexp(logits, dim=1).sum(2)  # over the gallery's elements y
    return (rows / (scale * k) + cols / (scale * kg)) / 2


# ------------------------------------------------------------------------------------------ smooth-Chamfer


class SmoothChamferConfig(ComponentConfig):
    """Options of the smooth-Chamfer similarity."""

    alpha: float = Field(16.0, gt=0, description="α (the released code's 'temperature'): larger = closer to Chamfer")


class SmoothChamfer(SetSimilarity):
    """SC(X, Y) = ½ [(1/(α K)) Σ_x log Σ_y exp(α c(x,y)) + (1/(α K')) Σ_y log Σ_x exp(α c(x,y))], c = cosine.

    A log-SUM-exp with no −log K correction (the released code's form); α → ∞ gives Chamfer.
    """

    name = "smooth_chamfer"

    def __init__(self, alpha: float = 16.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def logits(self, cos: torch.Tensor) -> torch.Tensor:
        """α·c(x, y) from the cosines (in place when no gradient is needed)."""
        return cos * self.alpha if torch.is_grad_enabled() else cos.mul_(self.alpha)

    def max_logit(self) -> float:
        """The largest logit (at cosine 1): the shift of the epilogue's shared exponential."""
        return self.alpha

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        if not torch.is_grad_enabled():  # inference: the engine's epilogue, so direct calls and blocks agree
            return self.from_cosines(self.cosines(query, gallery))
        return two_way_logsumexp(self.logits(self.cosines(query, gallery)), self.alpha)

    def from_cosines(self, cos: torch.Tensor) -> torch.Tensor:
        """The engine's epilogue: logits in place, then both log-sum-exps from one exponential."""
        return two_way_logsumexp_shifted(self.logits(cos), self.alpha, self.max_logit())


def build_smooth_chamfer(cfg: SmoothChamferConfig, **_: object) -> SmoothChamfer:
    """Smooth-Chamfer set similarity (DivE): two log-sum-exps over the K × K' cosines, α = 16."""
    return SmoothChamfer(cfg.alpha)


class EuclideanSmoothChamferConfig(SmoothChamferConfig):
    """Options of the Euclidean smooth-Chamfer similarity."""


class EuclideanSmoothChamfer(SmoothChamfer):
    """−SCD(X, Y): smooth-Chamfer with c(x, y) = −‖x − y‖₂ on unit elements (higher = more similar).

    The released code's ``smooth_chamfer_similarity_euclidean`` returns the distance SCD; this is its
    negative, so that it ranks like every other similarity.
    """

    name = "smooth_chamfer_euclidean"

    def logits(self, cos: torch.Tensor) -> torch.Tensor:
        """−α‖x − y‖ = −α·sqrt(2 − 2c) for unit vectors (in place when no gradient is needed)."""
        if torch.is_grad_enabled():
            return -self.alpha * safe_sqrt((2 - 2 * cos).clamp(min=0))
        return cos.mul_(-2.0).add_(2.0).clamp_(min=0).sqrt_().mul_(-self.alpha)

    def max_logit(self) -> float:
        """−α·distance is at most 0 (distance 0)."""
        return 0.0


def build_smooth_chamfer_euclidean(cfg: EuclideanSmoothChamferConfig, **_: object) -> EuclideanSmoothChamfer:
    """Smooth-Chamfer on negative Euclidean distances of unit elements (DivE's variant)."""
    return EuclideanSmoothChamfer(cfg.alpha)


# ------------------------------------------------------------------------------------------------ Chamfer


class ChamferConfig(ComponentConfig):
    """The Chamfer similarity has no options."""


class Chamfer(SetSimilarity):
    """½ [mean over x of max_y c(x, y) + mean over y of max_x c(x, y)], c = cosine."""

    name = "chamfer"
    pair_buffers = 1

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        cos = self.cosines(query, gallery)
        return self.from_cosines(cos)

    def from_cosines(self, cos: torch.Tensor) -> torch.Tensor:
        """½ (mean_x max_y c + mean_y max_x c) from the (n, K, m, K') cosines."""
        return (cos.amax(dim=3).mean(1) + cos.amax(dim=1).mean(2)) / 2


def build_chamfer(cfg: ChamferConfig, **_: object) -> Chamfer:
    """Chamfer set similarity: mean of row maxima and of column maxima of the K × K' cosines, halved."""
    return Chamfer()


# ------------------------------------------------------------------------------------ set match probability


class SetMatchProbConfig(ComponentConfig):
    """Options of the set match probability (the DivE paper's 'match probability' ablation)."""

    logit: Literal["cosine", "distance"] = Field(
        "cosine",
        description="cosine: ℓ = a·cos(x, y) + b (released DivE code); distance: ℓ = −a·‖x − y‖ + b (PCME's form)",
    )
    init_scale: float = Field(1.0, description="initial a (released code: 1)")
    init_shift: float = Field(0.0, description="initial b (released code: 0)")
    learnable: bool = Field(
        False,
        description="learn a and b with the model; the released code meant to, but its .cuda() on the parameters "
        "drops them from the module, so they stay at 1 and 0",
    )


class SetMatchProb(SetSimilarity):
    """(1/(K K')) Σ_x Σ_y sigmoid(ℓ(x, y)): PCME's match probability with the set elements as the samples."""

    name = "set_match_prob"
    pair_buffers = 1

    def __init__(self, cfg: SetMatchProbConfig) -> None:
        super().__init__()
        self.cfg = cfg
        scale, shift = torch.tensor(float(cfg.init_scale)), torch.tensor(float(cfg.init_shift))
        if cfg.learnable:
            self.scale, self.shift = nn.Parameter(scale), nn.Parameter(shift)
        else:
            self.register_buffer("scale", scale)
            self.register_buffer("shift", shift)

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        cos = self.cosines(query, gallery)
        if torch.is_grad_enabled():
            if self.cfg.logit == "cosine":
                logits = self.scale * cos + self.shift
            else:
                logits = -self.scale * safe_sqrt((2 - 2 * cos).clamp(min=0)) + self.shift
            prob = logits.sigmoid()
        else:  # in place: one K × K' buffer
            if self.cfg.logit == "distance":
                cos.mul_(-2.0).add_(2.0).clamp_(min=0).sqrt_().neg_()
            prob = cos.mul_(self.scale).add_(self.shift).sigmoid_()
        return prob.mean(dim=3).mean(dim=1)


def build_set_match_prob(cfg: SetMatchProbConfig, **_: object) -> SetMatchProb:
    """Mean over the K × K' element pairs of sigmoid(a·cos + b) (the DivE paper's match-probability ablation)."""
    return SetMatchProb(cfg)
