"""The dive loss terms against hand computations on tiny tensors (float64)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import SetEmbedding
from xmodalzoo.losses.base import LossContext
from xmodalzoo_dive.losses import DivELoss, DivELossConfig, set_uniformity, triplet_all_negatives
from xmodalzoo_dive.similarity import SmoothChamfer

B, CAPS = 3, 5  # 3 images, all 5 captions of each (the DivE batch)


def _positives() -> torch.Tensor:
    return torch.arange(B)[:, None] == (torch.arange(B * CAPS) // CAPS)[None, :]


def _scores(seed: int = 0) -> torch.Tensor:
    return torch.rand(B, B * CAPS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _hinge(margin: float, neg: float, pos: float) -> float:
    return max(0.0, margin + neg - pos)


def test_hardest_negative_triplet_with_five_captions_per_image() -> None:
    s, pos = _scores(), _positives()
    i2t, t2i = [], []
    for i in range(B):
        for t in range(B * CAPS):
            if not pos[i, t]:
                continue
            # i2t: this (image, positive caption) pair against the image's hardest negative caption
            i2t.append(max(_hinge(0.2, s[i, u].item(), s[i, t].item()) for u in range(B * CAPS) if not pos[i, u]))
            # t2i: the caption against its hardest negative image
            t2i.append(max(_hinge(0.2, s[j, t].item(), s[i, t].item()) for j in range(B) if j != i))
    loss = DivELoss(DivELossConfig(mmd_weight=0, uniformity_weight=0))
    out = loss.hardest.from_scores(s, pos)
    assert len(i2t) == B * CAPS and len(t2i) == B * CAPS
    assert math.isclose(out.terms["i2t"].item(), sum(i2t) / len(i2t), rel_tol=1e-12)
    assert math.isclose(out.terms["t2i"].item(), sum(t2i) / len(t2i), rel_tol=1e-12)


def test_all_negatives_triplet_averages_every_term() -> None:
    s, pos = _scores(1), _positives()
    i2t, t2i = [], []
    for i in range(B):
        for t in range(B * CAPS):
            if pos[i, t]:
                i2t += [_hinge(0.3, s[i, u].item(), s[i, t].item()) for u in range(B * CAPS) if not pos[i, u]]
                t2i += [_hinge(0.3, s[j, t].item(), s[i, t].item()) for j in range(B) if j != i]
    li, lt = triplet_all_negatives(s, pos, 0.3)
    assert len(i2t) == B * CAPS * (B - 1) * CAPS and len(t2i) == B * CAPS * (B - 1)
    assert math.isclose(li.item(), sum(i2t) / len(i2t), rel_tol=1e-12)
    assert math.isclose(lt.item(), sum(t2i) / len(t2i), rel_tol=1e-12)


def _mmd_reference(x: torch.Tensor, y: torch.Tensor) -> float:
    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        return math.exp(-0.5 * float((a - b).norm()))  # the distance, not squared

    kxx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    kyy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    kxy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return kxx - 2 * kxy + kyy


def _uniformity_reference(slots: torch.Tensor) -> float:
    n, k = slots.shape[:2]
    total = 0.0
    for item in slots:
        e = [v / v.norm() for v in item]
        total += sum(math.exp(-2 * float((e[a] - e[b]).norm()) ** 2) for a in range(k) for b in range(a + 1, k)) / (k * (k - 1) / 2)
    return total / n


def test_uniformity_matches_hand_computation() -> None:
    slots = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    assert math.isclose(set_uniformity(slots).item(), _uniformity_reference(slots), rel_tol=1e-10)
    assert set_uniformity(slots[:, :1]).item() == 0.0  # K = 1: nothing to spread
    # identical slots give the maximum 1, orthogonal unit slots exp(-4)
    same = torch.ones(2, 3, 4, dtype=torch.float64)
    assert math.isclose(set_uniformity(same).item(), 1.0)
    assert math.isclose(set_uniformity(torch.eye(3, dtype=torch.float64)[None]).item(), math.exp(-4), rel_tol=1e-12)


def test_full_loss_is_the_weighted_sum_of_hand_computed_terms() -> None:
    gen = torch.Generator().manual_seed(3)
    img_vec = F.normalize(torch.randn(B, 4, 6, generator=gen, dtype=torch.float64), dim=-1)
    txt_vec = F.normalize(torch.randn(B * CAPS, 2, 6, generator=gen, dtype=torch.float64), dim=-1)  # K_text ≠ K_image
    img_slots = torch.randn(B, 4, 6, generator=gen, dtype=torch.float64)
    txt_slots = torch.randn(B * CAPS, 2, 6, generator=gen, dtype=torch.float64)
    image = SetEmbedding(img_vec, aux={"slots": img_slots})
    text = SetEmbedding(txt_vec, aux={"slots": txt_slots})
    sim = SmoothChamfer(16.0)
    ctx = LossContext(_positives(), sim)
    loss = DivELoss(DivELossConfig())
    out = loss(image, text, ctx)
    mmd = _mmd_reference(img_vec.flatten(0, 1), txt_vec.flatten(0, 1))
    unif = _uniformity_reference(img_slots) + _uniformity_reference(txt_slots)
    assert math.isclose(out.terms["mmd"].item(), mmd, rel_tol=1e-9)
    assert math.isclose(out.terms["uniformity"].item(), unif, rel_tol=1e-9)
    triplet = loss.hardest.from_scores(sim(image, text), ctx.positives).loss.item()
    assert math.isclose(out.loss.item(), triplet + 0.01 * mmd + 0.01 * unif, rel_tol=1e-9)
    # uniformity on the final elements instead of the raw slots
    on_elements = DivELoss(DivELossConfig(uniformity_on="elements", mmd_weight=0))(image, text, ctx)
    assert math.isclose(on_elements.terms["uniformity"].item(),
                        _uniformity_reference(img_vec) + _uniformity_reference(txt_vec), rel_tol=1e-9)
    with pytest.raises(ValueError, match=r"no aux\['slots'\]"):
        loss(SetEmbedding(img_vec), text, ctx)
