"""PVSE loss parts against explicit loops: diversity, MMD (non-squared RBF), the full loss; values and gradients."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import PointEmbedding, SetEmbedding
from xmodalzoo.losses.base import LossContext
from xmodalzoo.api import build_component as build
from xmodalzoo_pvse.losses import diversity, laplacian_kernel, mmd

# 3 images, 5 captions; captions 0, 1 show image 0, caption 2 image 1, captions 3, 4 image 2
CAPTION_IMAGE = [0, 0, 1, 2, 2]
POSITIVES = torch.tensor([[c == i for c in CAPTION_IMAGE] for i in range(3)])


def diversity_loop(r: torch.Tensor) -> torch.Tensor:
    n, k, _ = r.shape
    total = torch.zeros(())
    for i in range(n):
        sq = torch.zeros(())
        for a in range(k):
            for b in range(k):
                entry = torch.dot(r[i, a], r[i, b]) - (1.0 if a == b else 0.0)
                sq = sq + entry**2
        total = total + torch.sqrt(sq) / k**2
    return total / n


def kernel_mean_loop(x: torch.Tensor, y: torch.Tensor, gamma: float, same: bool) -> torch.Tensor:
    total = torch.zeros(())
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            if same and i == j:
                total = total + 1.0  # exp(-γ·0); a constant, so no gradient
            else:
                total = total + torch.exp(-gamma * torch.linalg.norm(x[i] - y[j]))
    return total / (x.shape[0] * y.shape[0])


def mmd_loop(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    return (kernel_mean_loop(x, x, gamma, True) - 2 * kernel_mean_loop(x, y, gamma, False)
            + kernel_mean_loop(y, y, gamma, True))


def mil_scores_loop(img: torch.Tensor, txt: torch.Tensor) -> list[list[torch.Tensor]]:
    return [[torch.stack([F.cosine_similarity(img[i, a], txt[t, b], dim=0)
                          for a in range(img.shape[1]) for b in range(txt.shape[1])]).max()
             for t in range(txt.shape[0])] for i in range(img.shape[0])]


def triplet_loop(s: list[list[torch.Tensor]], margin: float) -> torch.Tensor:
    i2t, t2i = [], []
    for t, i in enumerate(CAPTION_IMAGE):
        neg_caps = [s[i][u] for u in range(len(CAPTION_IMAGE)) if CAPTION_IMAGE[u] != i]
        i2t.append(torch.stack([torch.clamp(margin + n - s[i][t], min=0) for n in neg_caps]).max())
        neg_imgs = [s[j][t] for j in range(len(s)) if j != i]
        t2i.append(torch.stack([torch.clamp(margin + n - s[i][t], min=0) for n in neg_imgs]).max())
    return torch.stack(i2t).mean() + torch.stack(t2i).mean()


def test_diversity_values_and_gradients_match_a_loop() -> None:
    torch.manual_seed(0)
    r = torch.randn(4, 3, 5, requires_grad=True)
    rn = F.normalize(r, dim=-1)
    got = diversity(rn)
    (g_got,) = torch.autograd.grad(got, r)
    want = diversity_loop(F.normalize(r, dim=-1))
    (g_want,) = torch.autograd.grad(want, r)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(g_got, g_want, atol=1e-6)


def test_diversity_is_zero_for_orthonormal_residuals_and_maximal_for_identical_ones() -> None:
    eye = torch.eye(4)[None, :2]  # two orthonormal residuals
    assert diversity(eye).item() == 0
    same = F.normalize(torch.ones(1, 2, 4), dim=-1)
    assert math.isclose(diversity(same).item(), math.sqrt(2) / 4, rel_tol=1e-6)  # off-diagonals 1: √2 / K²


def test_kernel_is_exp_of_minus_gamma_times_the_plain_distance() -> None:
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    assert math.isclose(laplacian_kernel(x, y, 0.5).item(), math.exp(-2.5), rel_tol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_mmd_values_and_gradients_match_a_loop(gamma: float) -> None:
    torch.manual_seed(0)
    x = F.normalize(torch.randn(6, 4), dim=-1).requires_grad_()
    y = F.normalize(torch.randn(5, 4), dim=-1).requires_grad_()
    got = mmd(x, y, gamma)
    gx, gy = torch.autograd.grad(got, (x, y))
    want = mmd_loop(x, y, gamma)
    wx, wy = torch.autograd.grad(want, (x, y))
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(gx, wx, atol=1e-5) and torch.allclose(gy, wy, atol=1e-5)
    assert torch.isfinite(gx).all()


def test_mmd_is_zero_for_equal_samples_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 3)
    assert abs(mmd(x, x.clone(), 0.5).item()) < 1e-6
    assert mmd(x, x + 1.0, 0.5).item() > 0.01


def make_sets(k: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    # float64: the reference loops and the batched code then agree to ~1e-15, so the tolerances below
    # test the formulas, not float32 cancellation in ‖x‖² + ‖y‖² − 2x·y
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, k, 4, generator=gen, dtype=torch.float64).requires_grad_() for n in (3, 5, 3, 5))


def test_full_loss_values_and_gradients_match_a_brute_force_reference() -> None:
    img_raw, txt_raw, img_res, txt_res = make_sets(2)
    loss = build("loss", {"type": "pvse"})
    sim = build("similarity", {"type": "mil_max"})
    leaves = (img_raw, txt_raw, img_res, txt_res)

    def embed(raw: torch.Tensor, res: torch.Tensor) -> SetEmbedding:
        return SetEmbedding(F.normalize(raw, dim=-1), aux={"residuals": F.normalize(res, dim=-1)})

    out = loss(embed(img_raw, img_res), embed(txt_raw, txt_res), LossContext(POSITIVES, sim))
    got_grads = torch.autograd.grad(out.loss, leaves)

    img, txt = F.normalize(img_raw, dim=-1), F.normalize(txt_raw, dim=-1)
    triplet = triplet_loop(mil_scores_loop(img, txt), 0.1)
    div = diversity_loop(F.normalize(img_res, dim=-1)) + diversity_loop(F.normalize(txt_res, dim=-1))
    dist = mmd_loop(img.reshape(-1, 4), txt.reshape(-1, 4), 0.5)
    want = triplet + 0.1 * div + 0.01 * dist
    want_grads = torch.autograd.grad(want, leaves)

    assert torch.allclose(out.loss, want, atol=1e-5)
    assert torch.allclose(out.terms["i2t"] + out.terms["t2i"], triplet, atol=1e-5)
    assert torch.allclose(out.terms["diversity"], div, atol=1e-6)
    assert torch.allclose(out.terms["mmd"], dist, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-5)
    assert triplet.item() > 0 and div.item() > 0 and dist.item() > 0  # every part is exercised


def test_k1_uses_the_triplet_loss_only() -> None:
    img_raw, txt_raw, _, _ = make_sets(1)
    img, txt = F.normalize(img_raw, dim=-1), F.normalize(txt_raw, dim=-1)
    loss = build("loss", {"type": "pvse"})
    ctx = LossContext(POSITIVES, build("similarity", {"type": "mil_max"}))
    out = loss(SetEmbedding(img), SetEmbedding(txt), ctx)  # no residuals needed
    assert set(out.terms) == {"i2t", "t2i"}
    assert torch.allclose(out.loss, triplet_loop(mil_scores_loop(img, txt), 0.1), atol=1e-6)
    point_ctx = LossContext(POSITIVES, build("similarity", {"type": "cosine"}))
    point = loss(PointEmbedding(img[:, 0]), PointEmbedding(txt[:, 0]), point_ctx)
    assert torch.allclose(point.loss, out.loss, atol=1e-6)


def test_weights_and_missing_residuals() -> None:
    img_raw, txt_raw, _, _ = make_sets(2)
    img, txt = SetEmbedding(F.normalize(img_raw, dim=-1)), SetEmbedding(F.normalize(txt_raw, dim=-1))
    ctx = LossContext(POSITIVES, build("similarity", {"type": "mil_max"}))
    with pytest.raises(ValueError, match=r"image embedding has no aux\['residuals'\]"):
        build("loss", {"type": "pvse"})(img, txt, ctx)
    out = build("loss", {"type": "pvse", "diversity_weight": 0, "mmd_weight": 0})(img, txt, ctx)
    assert set(out.terms) == {"i2t", "t2i"}
    assert torch.allclose(out.loss, out.terms["i2t"] + out.terms["t2i"])


def test_kernel_self_distances_are_exactly_zero_in_float32() -> None:
    """Unit vectors in 256-d, float32: an element compared with itself is 0 apart (kernel exactly 1),
    and the float32 MMD agrees with a float64 loop to ~1e-7 (the expansion ‖x‖² + ‖y‖² − 2x·y left
    self-distances of ~1e-3 here)."""
    gen = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(24, 256, generator=gen), dim=-1)
    y = F.normalize(torch.randn(20, 256, generator=gen), dim=-1)
    assert torch.equal(laplacian_kernel(x, x, 0.5).diag(), torch.ones(24))
    x64, y64 = x.double(), y.double()
    want = float(mmd_loop(x64, y64, 0.5))
    assert abs(mmd(x, y, 0.5).item() - want) < 5e-7
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(mmd(xr, y, 0.5), xr)
    assert torch.isfinite(gx).all()


def official_pvse_triplet(scores: torch.Tensor, margin: float, max_violation: bool) -> torch.Tensor:
    """PVSE's official triplet_ranking_loss (mean reduction) on a B × B batch with positives on the
    diagonal: cost matrices with the diagonal zeroed; the row/column maximum when max_violation, then
    the mean over everything that is left."""
    b = scores.shape[0]
    eye = torch.eye(b, dtype=torch.bool)
    diag = scores.diag()
    i2t = (margin + scores - diag[:, None]).clamp(min=0).masked_fill(eye, 0)
    t2i = (margin + scores - diag[None, :]).clamp(min=0).masked_fill(eye, 0)
    if max_violation:
        return i2t.max(1).values.mean() + t2i.max(0).values.mean()
    return i2t.mean() + t2i.mean()


@pytest.mark.parametrize("hardest", [False, True])
def test_ranking_term_is_the_official_one_in_both_modes(hardest: bool) -> None:
    """``hardest: false`` with the default ``negatives: mean_all`` is the official all-negatives loss
    (the mean over the B² hinge entries), not B times it; ``hardest: true`` the official max_violation."""
    gen = torch.Generator().manual_seed(4)
    b = 5
    img = F.normalize(torch.randn(b, 2, 4, generator=gen, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(b, 2, 4, generator=gen, dtype=torch.float64), dim=-1)
    sim = build("similarity", {"type": "mil_max"})
    eye = torch.eye(b, dtype=torch.bool)
    loss = build("loss", {"type": "pvse", "hardest": hardest, "diversity_weight": 0, "mmd_weight": 0})
    out = loss(SetEmbedding(img), SetEmbedding(txt), LossContext(eye, sim))
    scores = torch.tensor([[float(s) for s in row] for row in mil_scores_loop(img, txt)], dtype=torch.float64)
    want = official_pvse_triplet(scores, 0.1, hardest)
    assert want.item() > 0 and abs(out.loss.item() - want.item()) < 1e-12
    if not hardest:
        summed = build("loss", {"type": "pvse", "hardest": False, "negatives": "sum", "diversity_weight": 0,
                                "mmd_weight": 0})(SetEmbedding(img), SetEmbedding(txt), LossContext(eye, sim))
        assert abs(summed.loss.item() - b * want.item()) < 1e-12
