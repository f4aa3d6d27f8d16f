"""HREM's triplet terms on a (B, B) pair layout: distance-weighted sampling or hardest negatives.

Pair layout: row a of ``scores`` is the image of pair a, column b the caption of pair b;
``positives`` (B, B) marks pairs showing the same dataset image.  Same-image items are never
negatives.  Every term is a SUM over anchors (the released code).

Anchors (``anchors``):

* ``all_positives``: every same-image (a, b) is an anchor-positive pair, the diagonal included
  (the released code's distance-weighted ``TripletLoss``);
* ``diagonal``: only (a, a) (the released code's hardest-negative ``ContrastiveLoss``).

Distance-weighted sampling (Wu et al. 2017, as released): with d = √(2 − 2s) clipped below at
``cutoff`` (0.5), negative n of anchor row a is drawn with probability ∝
d_an^(2 − dim) · (1 − d_an²/4)^((3 − dim)/2) among the negatives with d_an < ``nonzero_cutoff``
(1.7 Flickr30K, 1.9 COCO); ``dim`` is 512 in the released code whatever the embedding size.  One
negative per anchor; loss relu(margin + s_an − s_ap).
"""
from __future__ import annotations

from typing import Literal

import torch

NoNegative = Literal["zero_direction", "skip_anchor"]


def anchor_pairs(positives: torch.Tensor, anchors: str) -> torch.Tensor:
    """(B, B) bool: the anchor-positive pairs of one direction (rows = anchors)."""
    if anchors == "diagonal":
        return torch.eye(positives.shape[0], dtype=torch.bool, device=positives.device) & positives
    if anchors == "all_positives":
        return positives
    raise ValueError(f"unknown anchors {anchors!r}; expected diagonal or all_positives")


def distance_weights(scores: torch.Tensor, positives: torch.Tensor, dim: int = 512, cutoff: float = 0.5,
                     nonzero_cutoff: float = 1.7) -> torch.Tensor:
    """(B, B) sampling probabilities of each row's negatives (rows sum to 1, or to 0 without a candidate).

    Computed as released: log-weights of positives are set to 0 and non-finite log-weights to 0
    before the row maximum is subtracted, which only matters through float underflow.
    """
    neg = ~positives
    dist = (2 - 2 * scores).sqrt().clamp(min=cutoff)
    log_w = (2.0 - dim) * dist.log() - ((dim - 3.0) / 2.0) * (1.0 - 0.25 * dist * dist).log()
    log_w = log_w.masked_fill(positives, 0.0)
    log_w = log_w.masked_fill(~torch.isfinite(log_w), 0.0)
    w = (log_w - log_w.max(dim=1, keepdim=True).values).exp() * (neg & (dist < nonzero_cutoff)).to(scores.dtype)
    return w / (w.sum(dim=1, keepdim=True) + 1e-20)


def draw_negatives(scores: torch.Tensor, positives: torch.Tensor, anchors: torch.Tensor, dim: int = 512,
                   cutoff: float = 0.5, nonzero_cutoff: float = 1.7, no_negative: NoNegative = "zero_direction",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Anchor rows a, positive columns p and one sampled negative column n per anchor pair (each (P,)).

    An anchor whose row has no candidate negative: ``zero_direction`` gives None, i.e. no term for the
    whole direction (the released code, whose ``torch.multinomial`` raises and is caught);
    ``skip_anchor`` drops that anchor only.
    """
    weights = distance_weights(scores.detach(), positives, dim, cutoff, nonzero_cutoff)
    a, p = anchors.nonzero(as_tuple=True)
    rows = weights[a]
    usable = rows.sum(1) > 0
    if not bool(usable.all()):
        if no_negative == "zero_direction":
            return None
        a, p, rows = a[usable], p[usable], rows[usable]
    if len(a) == 0:
        return None
    return a, p, torch.multinomial(rows, 1, generator=generator).squeeze(1)


def distance_weighted_triplet(scores: torch.Tensor, positives: torch.Tensor, anchors: torch.Tensor, margin: float,
                              dim: int = 512, cutoff: float = 0.5, nonzero_cutoff: float = 1.7,
                              no_negative: NoNegative = "zero_direction",
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Σ over anchor pairs (a, p) of relu(margin + s_an − s_ap), n drawn by :func:`draw_negatives`."""
    drawn = draw_negatives(scores, positives, anchors, dim, cutoff, nonzero_cutoff, no_negative, generator)
    if drawn is None:
        return scores.sum() * 0.0
    a, p, n = drawn
    return (margin + scores[a, n] - scores[a, p]).clamp(min=0).sum()


def hardest_triplet(scores: torch.Tensor, positives: torch.Tensor, anchors: torch.Tensor, margin: float,
                    all_negatives: bool = False) -> torch.Tensor:
    """Σ over anchor pairs (a, p) of the hinge on row a's hardest negative (or, ``all_negatives``, the sum
    over all of row a's negatives: the released code's first, "VSE0", epoch)."""
    a, p = anchors.nonzero(as_tuple=True)
    hinge = (margin + scores[a] - scores[a, p][:, None]).clamp(min=0).masked_fill(positives[a], 0.0)
    return hinge.sum() if all_negatives else hinge.max(dim=1).values.sum()
