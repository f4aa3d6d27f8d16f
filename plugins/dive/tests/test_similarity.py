"""Set similarities against brute-force double loops (float64), their limits, gradients and the engine."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import PointEmbedding, SetEmbedding
from xmodalzoo.api import build_component as build
from xmodalzoo.similarity import similarity_matrix, topk
from xmodalzoo_dive.similarity import (
    Chamfer, EuclideanSmoothChamfer, SetMatchProb, SetMatchProbConfig, SmoothChamfer, two_way_logsumexp,
)


def _sets(n: int, k: int, m: int, kg: int, d: int = 5, seed: int = 0) -> tuple[SetEmbedding, SetEmbedding]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, k, d, generator=gen, dtype=torch.float64)
    g = torch.randn(m, kg, d, generator=gen, dtype=torch.float64)
    return SetEmbedding(q), SetEmbedding(g)


def _cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(x @ y / (x.norm() * y.norm()))


def _dist(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x / x.norm() - y / y.norm()).norm())


def _brute(q: SetEmbedding, g: SetEmbedding, pair) -> torch.Tensor:  # type: ignore[no-untyped-def]
    out = torch.zeros(len(q), len(g), dtype=torch.float64)
    for i in range(len(q)):
        for j in range(len(g)):
            out[i, j] = pair(q.vectors[i], g.vectors[j])
    return out


def smooth_chamfer_pair(x: torch.Tensor, y: torch.Tensor, alpha: float, c=_cos) -> float:  # type: ignore[no-untyped-def]
    """½[(1/(αK)) Σ_x log Σ_y exp(α c) + (1/(αK')) Σ_y log Σ_x exp(α c)], straight from the formula."""
    k, kg = len(x), len(y)
    first = sum(math.log(sum(math.exp(alpha * c(x[a], y[b])) for b in range(kg))) for a in range(k))
    second = sum(math.log(sum(math.exp(alpha * c(x[a], y[b])) for a in range(k))) for b in range(kg))
    return 0.5 * (first / (alpha * k) + second / (alpha * kg))


def chamfer_pair(x: torch.Tensor, y: torch.Tensor) -> float:
    k, kg = len(x), len(y)
    rows = sum(max(_cos(x[a], y[b]) for b in range(kg)) for a in range(k)) / k
    cols = sum(max(_cos(x[a], y[b]) for a in range(k)) for b in range(kg)) / kg
    return 0.5 * (rows + cols)


@pytest.mark.parametrize("k,kg", [(4, 4), (3, 5), (1, 4)])
def test_smooth_chamfer_matches_double_loop(k: int, kg: int) -> None:
    q, g = _sets(3, k, 4, kg)
    for alpha in (16.0, 2.5):
        got = SmoothChamfer(alpha)(q, g)
        torch.testing.assert_close(got, _brute(q, g, lambda x, y, a=alpha: smooth_chamfer_pair(x, y, a)))


def test_euclidean_smooth_chamfer_matches_double_loop() -> None:
    q, g = _sets(3, 3, 4, 2)
    neg_dist = lambda x, y: -_dist(x, y)  # noqa: E731
    got = EuclideanSmoothChamfer(16.0)(q, g)
    torch.testing.assert_close(got, _brute(q, g, lambda x, y: smooth_chamfer_pair(x, y, 16.0, neg_dist)))
    with torch.no_grad():  # the in-place inference path computes the same
        torch.testing.assert_close(EuclideanSmoothChamfer(16.0)(q, g), got.detach())


def test_chamfer_matches_double_loop_and_is_the_limit_of_smooth_chamfer() -> None:
    q, g = _sets(3, 4, 5, 3)
    ref = _brute(q, g, chamfer_pair)
    torch.testing.assert_close(Chamfer()(q, g), ref)
    gaps = [float((SmoothChamfer(a)(q, g) - ref).abs().max()) for a in (16.0, 256.0, 4096.0)]
    # log-sum-exp exceeds the max by at most log(K)/α: the gap shrinks like 1/α
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < math.log(4) / 4096 + 1e-12, gaps
    assert (SmoothChamfer(16.0)(q, g) >= ref).all()  # a log-SUM-exp (no −log K): never below Chamfer


@pytest.mark.parametrize("logit", ["cosine", "distance"])
def test_set_match_prob_matches_double_loop(logit: str) -> None:
    q, g = _sets(2, 3, 3, 4)
    sim = SetMatchProb(SetMatchProbConfig(logit=logit, init_scale=3.0, init_shift=0.5)).double()
    score = (lambda x, y: 3.0 * _cos(x, y) + 0.5) if logit == "cosine" else (lambda x, y: -3.0 * _dist(x, y) + 0.5)

    def pair(x: torch.Tensor, y: torch.Tensor) -> float:
        return sum(1 / (1 + math.exp(-score(x[a], y[b]))) for a in range(len(x)) for b in range(len(y))) / (len(x) * len(y))

    ref = _brute(q, g, pair)
    torch.testing.assert_close(sim(q, g), ref)
    with torch.no_grad():
        torch.testing.assert_close(sim(q, g), ref)


def test_points_are_sets_of_one() -> None:
    gen = torch.Generator().manual_seed(3)
    q, g = torch.randn(3, 6, generator=gen), torch.randn(4, 6, generator=gen)
    cos = F.normalize(q, dim=-1) @ F.normalize(g, dim=-1).t()
    for sim in (SmoothChamfer(16.0), Chamfer()):
        torch.testing.assert_close(sim(PointEmbedding(q), PointEmbedding(g)), cos)
    mixed = SmoothChamfer(16.0)(PointEmbedding(q), SetEmbedding(g[:, None].expand(4, 3, 6)))
    assert mixed.shape == (3, 4)


def test_every_element_pair_gets_a_gradient() -> None:
    """Smooth-Chamfer passes gradient to all K × K' cosines (unlike a max, which picks one per row/column)."""
    gen = torch.Generator().manual_seed(4)
    cos = (torch.rand(2, 4, 3, 5, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()
    two_way_logsumexp(16.0 * cos, 16.0).sum().backward()
    assert (cos.grad > 0).all()
    # through the whole similarity: every element of every set moves the score
    q, g = _sets(2, 4, 3, 5)
    qv, gv = q.vectors.requires_grad_(), g.vectors.requires_grad_()
    SmoothChamfer(16.0)(SetEmbedding(qv), SetEmbedding(gv)).sum().backward()
    assert (qv.grad.norm(dim=-1) > 0).all() and (gv.grad.norm(dim=-1) > 0).all()
    # Chamfer's max leaves pairs without gradient
    cos2 = cos.detach().clone().requires_grad_()
    ((cos2.amax(3).mean(1) + cos2.amax(1).mean(2)) / 2).sum().backward()
    assert (cos2.grad == 0).any()


@pytest.mark.parametrize("name", ["smooth_chamfer", "smooth_chamfer_euclidean", "chamfer", "set_match_prob"])
def test_engine_blocks_equal_direct_call(name: str) -> None:
    sim = build("similarity", {"type": name})
    gen = torch.Generator().manual_seed(5)
    q = SetEmbedding(torch.randn(40, 4, 8, generator=gen))
    g = SetEmbedding(torch.randn(70, 3, 8, generator=gen))
    with torch.no_grad():
        direct = sim(q, g)
    pair = sim.pair_bytes(q, g)
    assert pair == 4 * (sim.pair_buffers * 12 + 2 * 7 + 2)
    whole = similarity_matrix(sim, q, g, device="cpu")
    small = similarity_matrix(sim, q, g, max_bytes=16 * 20 * pair, device="cpu")  # 16 x 20 pair blocks
    torch.testing.assert_close(whole, direct, atol=1e-6, rtol=1e-6)
    assert torch.equal(whole, small)
    scores, index = topk(sim, q, g, 5, max_bytes=16 * (20 * max(pair, 16) + 5 * 80), device="cpu")
    best = whole.sort(dim=1, descending=True, stable=True)
    assert torch.equal(scores, best.values[:, :5]) and torch.equal(index, best.indices[:, :5])


def test_wrong_embedding_kind_is_a_clear_error() -> None:
    from xmodalzoo.embeddings import GaussianEmbedding

    gauss = GaussianEmbedding(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="SmoothChamfer needs SetEmbedding or PointEmbedding"):
        SmoothChamfer()(gauss, gauss)
    with pytest.raises(ValueError, match="query dim 4 != gallery dim 5"):
        Chamfer()(SetEmbedding(torch.zeros(1, 2, 4)), SetEmbedding(torch.zeros(1, 2, 5)))
