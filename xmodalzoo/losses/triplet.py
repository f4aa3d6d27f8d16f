"""Hinge triplet loss (VSE++ style) over any similarity, with an all-negatives warm-up."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ..config import ComponentConfig
from ..embeddings import Embedding
from .base import Loss, LossContext, LossOutput


class TripletConfig(ComponentConfig):
    """Options of the hinge triplet loss."""

    margin: float = Field(0.2, ge=0, description="hinge margin")
    hardest: bool = Field(True, description="hardest negative per positive pair (VSE++); else sum over negatives")
    warmup_epochs: int = Field(0, ge=0, description="epochs that use all negatives first")
    negatives: Literal["sum", "mean"] = Field(
        "sum",
        description="with all negatives (hardest false, or during the warm-up): sum the hinge terms of an anchor, "
        "or average them over every column of its row (matching columns count as zero terms, as in the official "
        "PVSE code's mean over the B x B matrix)",
    )
    reduction: Literal["sum", "mean"] = Field("mean", description="over positive pairs, per direction")


class TripletLoss(Loss):
    """For every positive pair: hinge on the negative captions of its image and the negative images of its caption."""

    def __init__(self, cfg: TripletConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:
        scores = ctx.similarity(image, text)  # (B_i, B_t)
        return self.from_scores(scores, ctx.positives, ctx.epoch)

    def from_scores(self, scores: torch.Tensor, positives: torch.Tensor, epoch: int = 0) -> LossOutput:
        """The loss given a (B_i, B_t) score matrix and its positive mask."""
        pi, pt = positives.nonzero(as_tuple=True)
        pos = scores[pi, pt][:, None]  # (P, 1)
        # i2t: anchor image, negatives are the captions that do not match it
        i2t = (self.cfg.margin + scores[pi] - pos).clamp(min=0).masked_fill(positives[pi], 0)
        # t2i: anchor caption, negatives are the images that do not match it
        t2i = (self.cfg.margin + scores[:, pt].t() - pos).clamp(min=0).masked_fill(positives[:, pt].t(), 0)
        hardest = self.cfg.hardest and epoch >= self.cfg.warmup_epochs
        if hardest:
            i2t, t2i = i2t.max(1).values, t2i.max(1).values
        elif self.cfg.negatives == "mean":
            i2t, t2i = i2t.mean(1), t2i.mean(1)
        else:
            i2t, t2i = i2t.sum(1), t2i.sum(1)
        reduce = torch.sum if self.cfg.reduction == "sum" else torch.mean
        li, lt = reduce(i2t), reduce(t2i)
        return LossOutput(li + lt, {"i2t": li.detach(), "t2i": lt.detach()})


def build_triplet(cfg: TripletConfig, **_: object) -> TripletLoss:
    """Hinge triplet loss with margin; hardest negative after an all-negatives warm-up."""
    return TripletLoss(cfg)
