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
    hardest: bool = Field(
        True, description="hardest negative per positive pair (VSE++); else all negatives, reduced by `negatives`"
    )
    warmup_epochs: int = Field(0, ge=0, description="epochs that use all negatives first (reduced by `negatives`)")
    negatives: Literal["sum", "mean", "mean_all"] = Field(
        "sum",
        description="with all negatives (hardest false, or during the warm-up), per positive pair and direction: "
        "sum: the sum of the hinge terms over the non-matching candidates (VSE++/VSE∞); mean: their mean over "
        "the non-matching candidates (DivE: the mean over all (positive, negative) terms); mean_all: their sum "
        "divided by the number of all candidates, matching ones counting as zero terms (PVSE: the mean over the "
        "B × B hinge matrix with its zeroed diagonal)",
    )
    reduction: Literal["sum", "mean"] = Field("mean", description="over positive pairs, per direction")


class TripletLoss(Loss):
    """For every positive pair: hinge on the negative captions of its image and the negative images of its caption.

    For a positive pair (i, t) with score s_it, the i2t terms are [m + s_iu − s_it]₊ over the captions u
    that do not match i, the t2i terms [m + s_jt − s_it]₊ over the images j that do not match t.  Each
    direction keeps the hardest term, or reduces all of them by ``negatives``; then ``reduction`` sums or
    averages over the positive pairs; the loss is i2t + t2i.
    """

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
        caption_matches = positives[pi]  # (P, B_t)
        i2t = (self.cfg.margin + scores[pi] - pos).clamp(min=0).masked_fill(caption_matches, 0)
        # t2i: anchor caption, negatives are the images that do not match it
        image_matches = positives[:, pt].t()  # (P, B_i)
        t2i = (self.cfg.margin + scores[:, pt].t() - pos).clamp(min=0).masked_fill(image_matches, 0)
        hardest = self.cfg.hardest and epoch >= self.cfg.warmup_epochs
        if hardest:
            i2t, t2i = i2t.max(1).values, t2i.max(1).values
        else:
            i2t = reduce_negatives(i2t, caption_matches, self.cfg.negatives)
            t2i = reduce_negatives(t2i, image_matches, self.cfg.negatives)
        reduce = torch.sum if self.cfg.reduction == "sum" else torch.mean
        li, lt = reduce(i2t), reduce(t2i)
        return LossOutput(li + lt, {"i2t": li.detach(), "t2i": lt.detach()})


def reduce_negatives(terms: torch.Tensor, matches: torch.Tensor, negatives: str) -> torch.Tensor:
    """(P,) reduction of (P, C) hinge terms whose matching candidates (``matches``, bool) are already 0.

    ``sum`` and ``mean`` run over the non-matching candidates (a row without any gets 0); ``mean_all``
    divides the sum by all C candidates.
    """
    total = terms.sum(1)
    if negatives == "sum":
        return total
    if negatives == "mean_all":
        return total / terms.shape[1]
    if negatives == "mean":
        return total / (~matches).sum(1).clamp(min=1).to(terms.dtype)
    raise ValueError(f"unknown negatives reduction {negatives!r}; expected 'sum', 'mean' or 'mean_all'")


def build_triplet(cfg: TripletConfig, **_: object) -> TripletLoss:
    """Hinge triplet loss with margin; hardest negative after an all-negatives warm-up."""
    return TripletLoss(cfg)
