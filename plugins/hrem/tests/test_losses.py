"""The HREM loss against hand computations: the relevance KL, distance-weighted sampling's distribution
(a chi-square test with a fixed seed), same-image positives masked out of the negatives with the
anchors as configured, the no-candidate rule, and the composition of the four terms."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.losses.base import LossContext
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY
from xmodalzoo_hrem.losses import HREMLoss, HREMLossConfig, distance_target, pair_layout, relevance_kl
from xmodalzoo_hrem.triplet import anchor_pairs, distance_weighted_triplet, draw_negatives


def test_relevance_kl_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    image = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    text = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    target = distance_target(image, text, sigma=0.7)
    total = 0.0
    for r in range(3):
        g = [math.exp(-math.dist(image[r].tolist(), text[c].tolist()) / 0.7) for c in range(4)]
        assert target[r].tolist() == pytest.approx(g, rel=1e-12)
        p = [math.exp(float(x)) for x in s[r].detach()]
        p = [x / sum(p) for x in p]
        q = [math.exp(x) for x in g]
        q = [x / sum(q) for x in q]
        total += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    kl = relevance_kl(s, target)
    assert kl.item() == pytest.approx(total / 3, rel=1e-10)
    kl.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and image.grad is None  # the target is detached


def documented_probabilities(scores: torch.Tensor, positives: torch.Tensor, n: int, cutoff: float,
                             nonzero: float) -> list[list[float]]:
    """p(neg | anchor row) ∝ q(max(d, cutoff)) over negatives with d < nonzero, q(d) = d^(2−n) (1 − d²/4)^((3−n)/2)."""
    probs = []
    for a in range(scores.shape[0]):
        w = []
        for c in range(scores.shape[1]):
            d = max(math.sqrt(2 - 2 * float(scores[a, c])), cutoff)
            ok = not positives[a, c] and d < nonzero
            w.append(d ** (2 - n) * (1 - d * d / 4) ** ((3 - n) / 2) if ok else 0.0)
        probs.append([x / sum(w) for x in w])
    return probs


def test_distance_weighted_sampling_draws_from_the_documented_distribution() -> None:
    gen = torch.Generator().manual_seed(0)
    # 3-d unit vectors: distances spread over (0, 2), so the weights are far from uniform
    image = F.normalize(torch.randn(7, 3, generator=gen, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(7, 3, generator=gen, dtype=torch.float64), dim=-1)
    text[6] = -image[0]  # distance 2 from anchor 0: beyond the cut-off, never drawn
    scores = image @ text.t()
    positives = torch.eye(7, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = True  # pairs 0 and 1 show one image
    anchors = anchor_pairs(positives, "all_positives")
    expected = documented_probabilities(scores, positives, n=8, cutoff=0.5, nonzero=1.7)
    wrong = documented_probabilities(scores, positives, n=16, cutoff=0.5, nonzero=1.7)
    draws = 3000
    counts = torch.zeros(7, 7)
    rng = torch.Generator().manual_seed(1)
    for _ in range(draws):
        a, p, n = draw_negatives(scores, positives, anchors, dim=8, nonzero_cutoff=1.7, generator=rng)
        counts.index_put_((a, n), torch.ones(len(a)), accumulate=True)
    per_row = anchors.sum(1)  # rows 0 and 1 anchor two pairs each
    wrong_p = []
    for row in range(7):
        observed = counts[row].double()
        assert observed[positives[row]].sum() == 0  # same-image items are never negatives
        want = torch.tensor(expected[row], dtype=torch.float64) * draws * per_row[row]
        support = want > 0
        assert observed[~support].sum() == 0
        assert chisquare(observed[support], want[support]).pvalue > 1e-3
        other = torch.tensor(wrong[row], dtype=torch.float64)[support] * draws * per_row[row]
        wrong_p.append(chisquare(observed[support], other).pvalue)
    assert counts[0, 6] == 0 and expected[0][6] == 0.0
    assert min(wrong_p) < 1e-6  # the test can fail: the same formula with dim 16 is rejected


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


# pairs 0 and 1 are two captions of one image (image rows 0 = 1); pair 2 is another image
IMAGES = unit([1.0, 0.2, 0.0], [0.1, 1.0, 0.3])  # the batch's two distinct images
TEXTS = unit([0.9, 0.3, 0.1], [0.4, 0.9, 0.0], [0.3, 0.8, 0.5])
POSITIVES = torch.tensor([[True, True, False], [False, False, True]])  # (image rows, captions)


def test_same_image_captions_are_positives_never_negatives_hardest_by_hand() -> None:
    v, pos = pair_layout(IMAGES, POSITIVES)
    assert torch.equal(v, IMAGES[[0, 0, 1]])
    assert pos.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    s = [[float(v[a] @ TEXTS[b]) for b in range(3)] for a in range(3)]
    m = 0.2

    def h(x: float) -> float:
        return max(0.0, x)

    # diagonal anchors: pair a's image against the other image's captions, pair a's caption against other images
    i2t = h(m + s[0][2] - s[0][0]) + h(m + s[1][2] - s[1][1]) + max(h(m + s[2][0] - s[2][2]), h(m + s[2][1] - s[2][2]))
    t2i = h(m + s[2][0] - s[0][0]) + h(m + s[2][1] - s[1][1]) + max(h(m + s[0][2] - s[2][2]), h(m + s[1][2] - s[2][2]))
    loss = HREMLoss(HREMLossConfig(negatives="hardest", hardest_warmup_epochs=0))
    assert loss.anchors() == "diagonal"
    out = loss(PointEmbedding(IMAGES), PointEmbedding(TEXTS), LossContext(POSITIVES, None, epoch=0))
    assert out.loss.item() == pytest.approx(i2t + t2i, abs=1e-12) and i2t + t2i > 0
    # every same-image pair an anchor: (0, 1) and (1, 0) join, with the same negatives
    extra = h(m + s[0][2] - s[0][1]) + h(m + s[1][2] - s[1][0]) + h(m + s[2][1] - s[0][1]) + h(m + s[2][0] - s[1][0])
    allpos = HREMLoss(HREMLossConfig(negatives="hardest", anchors="all_positives", hardest_warmup_epochs=0))
    assert allpos(PointEmbedding(IMAGES), PointEmbedding(TEXTS), LossContext(POSITIVES, None)).loss.item() == \
        pytest.approx(i2t + t2i + extra, abs=1e-12)
    # the first epoch sums over all negatives (the released vse loss's warm-up)
    warm = HREMLoss(HREMLossConfig(negatives="hardest"))
    summed_i2t = h(m + s[0][2] - s[0][0]) + h(m + s[1][2] - s[1][1]) + h(m + s[2][0] - s[2][2]) + h(m + s[2][1] - s[2][2])
    summed_t2i = h(m + s[2][0] - s[0][0]) + h(m + s[2][1] - s[1][1]) + h(m + s[0][2] - s[2][2]) + h(m + s[1][2] - s[2][2])
    got = warm(PointEmbedding(IMAGES), PointEmbedding(TEXTS), LossContext(POSITIVES, None, epoch=0)).loss.item()
    assert got == pytest.approx(summed_i2t + summed_t2i, abs=1e-12)
    # negatives: all sums over every negative in every epoch (VSE0)
    every = HREMLoss(HREMLossConfig(negatives="all"))
    assert every.anchors() == "diagonal"
    got = every(PointEmbedding(IMAGES), PointEmbedding(TEXTS), LossContext(POSITIVES, None, epoch=5)).loss.item()
    assert got == pytest.approx(summed_i2t + summed_t2i, abs=1e-12)


def test_distance_weighted_loss_by_hand_when_at_most_one_candidate_is_left() -> None:
    # a cut-off of 1.5 leaves each anchor at most one candidate negative (two identical image rows count
    # as one), so nothing is random; caption 0 keeps none
    images = unit([1, 0, 0], [0, 1, 0])
    texts = unit([1, -0.5, 0.3], [0.2, 1, 0], [1, 0.3, 0])  # captions 0, 1 of image 0; caption 2 of image 1
    positives = torch.tensor([[True, True, False], [False, False, True]])
    v, pos = pair_layout(images, positives)
    s = v @ texts.t()
    d = (2 - 2 * s).sqrt()
    assert d[2, 0] > 1.5 > max(float(d[2, 1]), float(d[0, 2]))
    m, h = 0.2, (lambda x: max(0.0, float(x)))
    i2t = sum(h(m + s[a, 2] - s[a, p]) for a, p in ((0, 0), (0, 1), (1, 0), (1, 1))) + h(m + s[2, 1] - s[2, 2])
    zero = HREMLoss(HREMLossConfig(dw_nonzero_cutoff=1.5, dw_dim=8))
    assert zero.anchors() == "all_positives"
    out = zero(PointEmbedding(images), PointEmbedding(texts), LossContext(positives, None))
    assert out.loss.item() == pytest.approx(i2t, abs=1e-12)  # t2i: caption 0 has no candidate, so no t2i term
    # skipping only caption 0: caption 1 against image row 2, caption 2 against image 0 (rows 0 and 1 alike)
    t2i = sum(h(m + s[2, 1] - s[p, 1]) for p in (0, 1)) + h(m + s[0, 2] - s[2, 2])
    skip = HREMLoss(HREMLossConfig(dw_nonzero_cutoff=1.5, dw_dim=8, dw_no_negative="skip_anchor"))
    got = skip(PointEmbedding(images), PointEmbedding(texts), LossContext(positives, None)).loss.item()
    assert got == pytest.approx(i2t + t2i, abs=1e-12) and t2i > 0


def test_an_anchor_without_candidates_zeroes_its_direction_or_is_skipped() -> None:
    scores = unit([1, 0], [0, 1]) @ unit([1, 0], [-1, 0.001]).t()  # anchor 0's only negative is at distance ~2
    positives = torch.eye(2, dtype=torch.bool)
    anchors = anchor_pairs(positives, "diagonal")
    assert draw_negatives(scores, positives, anchors) is None
    assert distance_weighted_triplet(scores, positives, anchors, 0.2).item() == 0.0
    a, p, n = draw_negatives(scores, positives, anchors, no_negative="skip_anchor")
    assert a.tolist() == [1] and n.tolist() == [0]
    expected = max(0.0, 0.2 + float(scores[1, 0] - scores[1, 1]))
    got = distance_weighted_triplet(scores, positives, anchors, 0.2, no_negative="skip_anchor").item()
    assert got == pytest.approx(expected)


def test_loss_adds_the_enhanced_terms_and_the_regulariser_when_the_module_is_on() -> None:
    gen = torch.Generator().manual_seed(0)
    v, pos = pair_layout(IMAGES, POSITIVES)
    v_bar = F.normalize(v + 0.3 * torch.randn(3, 3, generator=gen, dtype=torch.float64), dim=-1)
    u_bar = F.normalize(TEXTS + 0.3 * torch.randn(3, 3, generator=gen, dtype=torch.float64), dim=-1)
    s_i2t, s_t2i = torch.randn(3, 3, generator=gen, dtype=torch.float64), torch.randn(3, 3, generator=gen, dtype=torch.float64)
    extras = {"image": PointEmbedding(v_bar), "text": PointEmbedding(u_bar), "image_plain": PointEmbedding(v),
              "text_plain": PointEmbedding(TEXTS), "positives": pos, "relevance_i2t": s_i2t, "relevance_t2i": s_t2i}
    loss = HREMLoss(HREMLossConfig(negatives="hardest", hardest_warmup_epochs=0, regularizer_weight=10.0))
    ctx = LossContext(POSITIVES, None, extras=extras)
    out = loss(PointEmbedding(IMAGES), PointEmbedding(TEXTS), ctx)
    L = loss.triplet
    base, enhanced = L(v, TEXTS, pos, 0), L(v_bar, u_bar, pos, 0)
    cross = L(v_bar, TEXTS, pos, 0) + L(v, u_bar, pos, 0)
    target = distance_target(v, TEXTS)
    kl = relevance_kl(s_i2t, target) + relevance_kl(s_t2i, target.t())
    assert set(out.terms) == {"base", "enhanced", "cross", "relevance_kl"}
    for name, value in (("base", base), ("enhanced", enhanced), ("cross", cross), ("relevance_kl", kl)):
        assert out.terms[name].item() == pytest.approx(value.item(), abs=1e-12)
    assert out.loss.item() == pytest.approx((base + enhanced + cross + 10 * kl).item(), abs=1e-12)
    no_cross = HREMLoss(HREMLossConfig(negatives="hardest", hardest_warmup_epochs=0, cross_terms=False))
    assert "cross" not in no_cross(PointEmbedding(IMAGES), PointEmbedding(TEXTS), ctx).terms
    plain = loss(PointEmbedding(IMAGES), PointEmbedding(TEXTS), LossContext(POSITIVES, None))
    assert set(plain.terms) == {"base"} and plain.loss.item() == pytest.approx(base.item())


def test_loss_contract_is_declared() -> None:
    discover()
    entry = REGISTRY.get("loss", "hrem")
    assert entry.contract["accepts"] == ("point",) and entry.contract["similarities"] == ("cosine",)
    assert [name for name in itertools.islice(HREMLossConfig.model_fields, 0, 2)] == ["margin", "negatives"]
