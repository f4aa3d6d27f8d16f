"""DivE's loss: hinge triplet on the set similarity + MMD between the modalities + set uniformity.

loss = i2t + t2i + w_mmd · MMD(image elements, text elements) + w_unif · (U(image slots) + U(text slots)).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from xmodalzoo.plugin_api import (
    ComponentConfig, Embedding, Loss, LossContext, LossOutput, TripletConfig, TripletLoss, mmd,
)

from .similarity import set_vectors


class DivELossConfig(ComponentConfig):
    """Options of the DivE loss; the defaults are the released COCO recipe."""

    margin: float = Field(0.2, ge=0, description="hinge margin of the triplet loss")
    negatives: Literal["hardest", "all"] = Field(
        "hardest",
        description="hardest: per (image, positive caption) pair the hardest negative caption, per caption the "
        "hardest negative image, each direction averaged; all: each direction averaged over every (positive pair, "
        "negative) term (the released code without --max_violation)",
    )
    mmd_weight: float = Field(0.01, ge=0, description="weight of the MMD between all image and all text elements")
    mmd_gamma: float = Field(0.5, gt=0, description="γ of the kernel exp(−γ‖x − y‖₂) (distance not squared)")
    uniformity_weight: float = Field(0.01, ge=0, description="weight of the set uniformity of both modalities")
    uniformity_t: float = Field(2.0, gt=0, description="t in exp(−t‖e_a − e_b‖²)")
    uniformity_on: Literal["slots", "elements"] = Field(
        "slots",
        description="what the uniformity reads: slots = the L2-normalised raw slots (released code, --unif_residual), "
        "elements = the final embeddings",
    )


def set_uniformity(vectors: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Mean over items of Σ_{a<b} exp(−t‖e_a − e_b‖²) / (K(K−1)/2), e = L2-normalised rows of (N, K, D).

    No log (unlike Wang & Isola's uniformity); 0 for K = 1.
    """
    k = vectors.shape[1]
    if k < 2:
        return vectors.new_zeros(())
    e = F.normalize(vectors, dim=-1)
    sq = e.square().sum(-1)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2 * e @ e.transpose(1, 2)).clamp(min=0)  # (N, K, K)
    a, b = torch.triu_indices(k, k, offset=1, device=vectors.device)
    return torch.exp(-t * d2[:, a, b]).sum(1).mean() / (k * (k - 1) / 2)


def triplet_all_negatives(scores: torch.Tensor, positives: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(i2t, t2i): hinge terms averaged over every (positive pair, negative) combination, per direction."""
    pi, pt = positives.nonzero(as_tuple=True)
    pos = scores[pi, pt][:, None]  # (P, 1)
    neg_caps, neg_imgs = ~positives[pi], ~positives[:, pt].t()  # (P, B_t), (P, B_i)
    i2t = (margin + scores[pi] - pos).clamp(min=0) * neg_caps
    t2i = (margin + scores[:, pt].t() - pos).clamp(min=0) * neg_imgs
    return i2t.sum() / neg_caps.sum().clamp(min=1), t2i.sum() / neg_imgs.sum().clamp(min=1)


def _slots(emb: Embedding, role: str) -> torch.Tensor:
    slots = emb.aux.get("slots")  # type: ignore[attr-defined]
    if slots is None:
        raise ValueError(f"dive loss: the {role} embedding has no aux['slots'] (N, K, D) for the set uniformity; "
                         "use the dive_slots head, uniformity_on: elements, or uniformity_weight: 0")
    return slots


class DivELoss(Loss):
    """Triplet(set similarity) + w_mmd · MMD + w_unif · uniformity; ``terms``: i2t, t2i, mmd, uniformity."""

    def __init__(self, cfg: DivELossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hardest = TripletLoss(TripletConfig(margin=cfg.margin, hardest=True, reduction="mean"))

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:
        scores = ctx.similarity(image, text)  # (B_i, B_t)
        if self.cfg.negatives == "hardest":
            out = self.hardest.from_scores(scores, ctx.positives, ctx.epoch)
            loss, terms = out.loss, dict(out.terms)
        else:
            i2t, t2i = triplet_all_negatives(scores, ctx.positives, self.cfg.margin)
            loss, terms = i2t + t2i, {"i2t": i2t.detach(), "t2i": t2i.detach()}
        img, txt = set_vectors(image), set_vectors(text)
        if self.cfg.mmd_weight > 0:
            dist = mmd(img.flatten(0, 1), txt.flatten(0, 1), self.cfg.mmd_gamma)
            loss = loss + self.cfg.mmd_weight * dist
            terms["mmd"] = dist.detach()
        if self.cfg.uniformity_weight > 0:
            if self.cfg.uniformity_on == "slots":
                img_u, txt_u = _slots(image, "image"), _slots(text, "text")
            else:
                img_u, txt_u = img, txt
            unif = set_uniformity(img_u, self.cfg.uniformity_t) + set_uniformity(txt_u, self.cfg.uniformity_t)
            loss = loss + self.cfg.uniformity_weight * unif
            terms["uniformity"] = unif.detach()
        return LossOutput(loss, terms)


def build_dive_loss(cfg: DivELossConfig, **_: object) -> DivELoss:
    """DivE: hinge triplet on the set similarity (all captions of each image) + MMD + set uniformity."""
    return DivELoss(cfg)
