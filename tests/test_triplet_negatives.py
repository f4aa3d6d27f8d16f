"""The core triplet loss's ``negatives`` reductions (all-negatives mode) against references written from
the official formulas: explicit loops over (anchor, candidate) terms, PVSE's mean over the B × B hinge
matrix, DivE's mean over all (positive, negative) terms."""
from __future__ import annotations

import pytest
import torch

from xmodalzoo.losses.triplet import TripletConfig, TripletLoss


def hinge(margin: float, negative: float, positive: float) -> float:
    return max(0.0, margin + negative - positive)


def reference(scores: torch.Tensor, positives: torch.Tensor, margin: float, negatives: str, reduction: str) -> float:
    """For every positive pair (i, t), the hinge terms over the captions u not matching i (i2t) and the
    images j not matching t (t2i), reduced per pair by ``negatives``, then over the pairs by ``reduction``.

    sum: Σ over the non-matching candidates; mean: that sum / their number; mean_all: that sum / the
    number of all candidates of the row (matching ones are zero terms).
    """
    n_img, n_txt = positives.shape
    i2t, t2i = [], []
    for i in range(n_img):
        for t in range(n_txt):
            if not positives[i, t]:
                continue
            pos = float(scores[i, t])
            row = [hinge(margin, float(scores[i, u]), pos) for u in range(n_txt) if not positives[i, u]]
            col = [hinge(margin, float(scores[j, t]), pos) for j in range(n_img) if not positives[j, t]]
            for terms, out, count_all in ((row, i2t, n_txt), (col, t2i, n_img)):
                if negatives == "sum":
                    out.append(sum(terms))
                elif negatives == "mean":
                    out.append(sum(terms) / len(terms) if terms else 0.0)
                else:
                    out.append(sum(terms) / count_all)
    if reduction == "sum":
        return sum(i2t) + sum(t2i)
    return sum(i2t) / len(i2t) + sum(t2i) / len(t2i)


def irregular_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """5 image rows and 9 captions, 1–3 captions per image."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(5, 9, generator=gen, dtype=torch.float64) * 0.3
    caption_image = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])
    return scores, torch.arange(5)[:, None] == caption_image[None, :]


@pytest.mark.parametrize("negatives", ["sum", "mean", "mean_all"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_all_negatives_reductions_match_the_loop(negatives: str, reduction: str) -> None:
    scores, positives = irregular_batch(0)
    loss = TripletLoss(TripletConfig(margin=0.2, hardest=False, negatives=negatives, reduction=reduction))
    out = loss.from_scores(scores, positives)
    want = reference(scores, positives, 0.2, negatives, reduction)
    assert abs(out.loss.item() - want) < 1e-12
    assert want > 0


def test_the_three_reductions_differ() -> None:
    scores, positives = irregular_batch(1)
    values = {n: TripletLoss(TripletConfig(hardest=False, negatives=n)).from_scores(scores, positives).loss.item()
              for n in ("sum", "mean", "mean_all")}
    assert values["sum"] > values["mean"] > values["mean_all"] > 0, values


def test_official_pvse_all_negatives_is_the_mean_over_b_squared() -> None:
    """PVSE (official, max_violation off): one caption per image, positives on the diagonal; each
    direction's hinge matrix with its diagonal zeroed, averaged over all B² entries."""
    gen = torch.Generator().manual_seed(1)
    b, margin = 6, 0.1
    scores = torch.randn(b, b, generator=gen, dtype=torch.float64)
    diag = scores.diag()
    eye = torch.eye(b, dtype=torch.bool)
    cost_s = (margin + scores - diag[:, None]).clamp(min=0).masked_fill(eye, 0)   # anchor image, row i
    cost_im = (margin + scores - diag[None, :]).clamp(min=0).masked_fill(eye, 0)  # anchor caption, column t
    expected = cost_s.sum() / b**2 + cost_im.sum() / b**2
    loss = TripletLoss(TripletConfig(margin=margin, hardest=False, negatives="mean_all"))
    assert torch.allclose(loss.from_scores(scores, eye).loss, expected, atol=1e-12)


def test_official_dive_all_negatives_is_the_mean_over_positive_negative_terms() -> None:
    """DivE (official, max_violation off): B images × T captions each (caption u shows image u // T).
    i2t: the mean over all T·B·(B·T − T) (positive caption, negative caption) terms of each image;
    t2i: the mean over all B·T·(B − 1) (positive image, negative image) terms of each caption."""
    gen = torch.Generator().manual_seed(2)
    b, t, margin = 4, 3, 0.2
    scores = torch.randn(b, b * t, generator=gen, dtype=torch.float64) * 0.4
    positives = torch.arange(b)[:, None] == (torch.arange(b * t) // t)[None, :]
    i2t_terms = [hinge(margin, float(scores[i, u]), float(scores[i, p]))
                 for i in range(b) for p in range(b * t) if p // t == i
                 for u in range(b * t) if u // t != i]
    t2i_terms = [hinge(margin, float(scores[j, c]), float(scores[c // t, c]))
                 for c in range(b * t) for j in range(b) if j != c // t]
    assert len(i2t_terms) == t * b * (b * t - t) and len(t2i_terms) == b * t * (b - 1)
    expected = sum(i2t_terms) / len(i2t_terms) + sum(t2i_terms) / len(t2i_terms)
    loss = TripletLoss(TripletConfig(margin=margin, hardest=False, negatives="mean"))
    assert abs(loss.from_scores(scores, positives).loss.item() - expected) < 1e-12


def test_warmup_epochs_use_the_negatives_reduction_then_the_hardest() -> None:
    scores, positives = irregular_batch(3)
    cfg = TripletConfig(margin=0.2, hardest=True, warmup_epochs=2, negatives="mean_all")
    loss = TripletLoss(cfg)
    warm = reference(scores, positives, 0.2, "mean_all", "mean")
    assert abs(loss.from_scores(scores, positives, epoch=1).loss.item() - warm) < 1e-12
    hard = TripletLoss(TripletConfig(margin=0.2)).from_scores(scores, positives).loss.item()
    assert abs(loss.from_scores(scores, positives, epoch=2).loss.item() - hard) < 1e-12 and hard != warm


def test_a_row_without_negatives_contributes_zero() -> None:
    scores = torch.tensor([[0.5, 0.1], [0.2, 0.9]], dtype=torch.float64)
    positives = torch.tensor([[True, True], [False, True]])  # image 0 matches every caption
    for negatives in ("sum", "mean", "mean_all"):
        out = TripletLoss(TripletConfig(hardest=False, negatives=negatives)).from_scores(scores, positives)
        assert torch.isfinite(out.loss)
        assert abs(out.loss.item() - reference(scores, positives, 0.2, negatives, "mean")) < 1e-12
