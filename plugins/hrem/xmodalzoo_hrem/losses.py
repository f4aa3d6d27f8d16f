"""The HREM loss: L(v, u) always; after the instance-level module's warm-up also
L(v̄, ū) + L(v̄, u) + L(v, ū) + w · [KL(softmax(S_i2t) ‖ softmax(G)) + KL(softmax(S_t2i) ‖ softmax(Gᵀ))],
G = exp(−cdist(v, u) / σ) detached.

L is the triplet of :mod:`.triplet`, summed over anchors, in both directions (image anchors and
caption anchors), on the pair layout (one image row per caption; same-image pairs positive).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from xmodalzoo.plugin_api import ComponentConfig, Embedding, Loss, LossContext, LossOutput

from .triplet import anchor_pairs, distance_weighted_triplet, hardest_triplet


class HREMLossConfig(ComponentConfig):
    """Options of the HREM loss (defaults: the released code, Flickr30K)."""

    margin: float = Field(0.2, ge=0, description="triplet margin")
    negatives: Literal["distance_weighted", "hardest", "all"] = Field(
        "distance_weighted",
        description="one negative per anchor sampled by distance (released default), the hardest, or the sum over all "
        "negatives (the released vse loss without max_violation, VSE0)")
    anchors: Literal["auto", "diagonal", "all_positives"] = Field(
        "auto",
        description="anchor pairs: every same-image pair, or only each caption's own pair; auto = what the released "
        "code does for the chosen negatives (distance_weighted: all_positives; hardest and all: diagonal)",
    )
    dw_dim: int = Field(512, ge=4, description="distance weighting: the dimension n in q(d) (512 in the released code)")
    dw_cutoff: float = Field(0.5, gt=0, description="distance weighting: distances are clipped below at this value")
    dw_nonzero_cutoff: float = Field(1.7, gt=0, description="distance weighting: negatives at this distance or more "
                                                            "are never drawn (1.7 Flickr30K, 1.9 COCO)")
    dw_no_negative: Literal["zero_direction", "skip_anchor"] = Field(
        "zero_direction",
        description="an anchor without a candidate negative: zero the whole direction's term (released code) or skip "
        "that anchor",
    )
    hardest_warmup_epochs: int = Field(
        1, ge=0, description="hardest: epochs that sum over all negatives first (the released vse loss's warm-up)")
    cross_terms: bool = Field(True, description="add L(v̄, u) + L(v, ū) to L(v̄, ū) once the module is on")
    regularizer_weight: float = Field(10.0, ge=0, description="weight of the relevance KL regulariser")
    sigma: float = Field(1.0, gt=0, description="σ of the regulariser's target exp(−cdist(v, u) / σ)")


def distance_target(image: torch.Tensor, text: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """(R, C) exp(−‖image_r − text_c‖ / σ), detached: what the relevance regulariser pulls S towards."""
    return torch.exp(-torch.cdist(image, text, compute_mode="donot_use_mm_for_euclid_dist") / sigma).detach()


def relevance_kl(relevance: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_rows KL(softmax(S_row) ‖ softmax(target_row)) / rows, for (R, C) ``relevance`` S and ``target``.

    Only S receives gradient (the released ``kl_div`` with T = 1 and ``batchmean``).
    """
    log_q = F.log_softmax(target.detach(), dim=-1)
    log_p = F.log_softmax(relevance, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum() / relevance.shape[0]


def pair_layout(image: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image vectors (B_t, D), one row per caption (its image), and the (B_t, B_t) same-image mask.

    ``positives`` (B_i, B_t) marks the batch's matching (image row, caption) pairs; each caption's
    image is its first matching row.
    """
    rows = positives.to(torch.int8).argmax(0)
    return image[rows], positives[rows]


class HREMLoss(Loss):
    """Triplet on the plain embeddings, plus the enhanced terms and the relevance regulariser when
    ``ctx.extras`` holds the instance-level module's outputs."""

    def __init__(self, cfg: HREMLossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def anchors(self) -> str:
        if self.cfg.anchors != "auto":
            return self.cfg.anchors
        return "all_positives" if self.cfg.negatives == "distance_weighted" else "diagonal"

    def triplet(self, image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor, epoch: int) -> torch.Tensor:
        """L(image, text): both directions, summed; ``image``/``text`` (B, D) unit vectors in pair layout."""
        c = self.cfg
        scores = image @ text.t()
        total = scores.new_zeros(())
        for s, pos in ((scores, positives), (scores.t(), positives.t())):
            anchors = anchor_pairs(pos, self.anchors())
            if c.negatives == "distance_weighted":
                total = total + distance_weighted_triplet(s, pos, anchors, c.margin, c.dw_dim, c.dw_cutoff,
                                                          c.dw_nonzero_cutoff, c.dw_no_negative)
            else:
                summed = c.negatives == "all" or epoch < c.hardest_warmup_epochs
                total = total + hardest_triplet(s, pos, anchors, c.margin, summed)
        return total

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:
        v, positives = pair_layout(image.vectors, ctx.positives)
        base = self.triplet(v, text.vectors, positives, ctx.epoch)
        terms: dict[str, torch.Tensor] = {"base": base.detach()}
        loss = base
        x: dict[str, Any] = ctx.extras
        if "image" in x:
            v, u, pos = x["image_plain"].vectors, x["text_plain"].vectors, x["positives"]
            v_bar, u_bar = x["image"].vectors, x["text"].vectors
            enhanced = self.triplet(v_bar, u_bar, pos, ctx.epoch)
            terms["enhanced"] = enhanced.detach()
            loss = loss + enhanced
            if self.cfg.cross_terms:
                cross = self.triplet(v_bar, u, pos, ctx.epoch) + self.triplet(v, u_bar, pos, ctx.epoch)
                terms["cross"] = cross.detach()
                loss = loss + cross
            target = distance_target(v, u, self.cfg.sigma)
            reg = relevance_kl(x["relevance_i2t"], target) + relevance_kl(x["relevance_t2i"], target.t())
            terms["relevance_kl"] = reg.detach()
            loss = loss + self.cfg.regularizer_weight * reg
        return LossOutput(loss, terms)


def build_hrem_loss(cfg: HREMLossConfig, **_: object) -> HREMLoss:
    """HREM: distance-weighted triplet on plain and relation-enhanced embeddings + relevance KL."""
    return HREMLoss(cfg)
