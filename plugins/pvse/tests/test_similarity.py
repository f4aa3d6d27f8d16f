"""mil_max against a loop over pairs and K × K' cosines; K = 1 is cosine; the chunked engine is exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import PointEmbedding, SetEmbedding
from xmodalzoo.api import build_component as build
from xmodalzoo.similarity import plan_chunks, similarity_matrix, topk
from xmodalzoo_pvse.similarity import MILMax


def mil_max() -> MILMax:
    return build("similarity", {"type": "mil_max"})


def loop_reference(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    rows = []
    for i in range(q.shape[0]):
        row = []
        for j in range(g.shape[0]):
            cos = [F.cosine_similarity(q[i, a], g[j, b], dim=0) for a in range(q.shape[1]) for b in range(g.shape[1])]
            row.append(torch.stack(cos).max())
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("kq,kg", [(2, 2), (3, 1), (1, 4)])
def test_values_and_gradients_match_a_loop_over_pairs(kq: int, kg: int) -> None:
    torch.manual_seed(0)
    q = torch.randn(4, kq, 5, requires_grad=True)
    g = torch.randn(3, kg, 5, requires_grad=True)
    w = torch.randn(4, 3)
    got = mil_max()(SetEmbedding(q), SetEmbedding(g))
    (got * w).sum().backward()
    gq, gg = q.grad.clone(), g.grad.clone()
    q.grad = g.grad = None
    want = loop_reference(q, g)
    (want * w).sum().backward()
    assert got.shape == (4, 3)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(gq, q.grad, atol=1e-6) and torch.allclose(gg, g.grad, atol=1e-6)


def test_unnormalised_inputs_are_normalised() -> None:
    torch.manual_seed(0)
    q, g = torch.randn(3, 2, 4), torch.randn(5, 2, 4)
    sim = mil_max()
    assert torch.allclose(sim(SetEmbedding(3 * q), SetEmbedding(0.1 * g)), sim(SetEmbedding(q), SetEmbedding(g)), atol=1e-6)


def test_k1_sets_equal_cosine_on_the_points() -> None:
    torch.manual_seed(0)
    q, g = torch.randn(6, 8), torch.randn(7, 8)
    cosine = build("similarity", {"type": "cosine"})
    want = cosine(PointEmbedding(q), PointEmbedding(g))
    got = mil_max()(SetEmbedding(q[:, None]), SetEmbedding(g[:, None]))
    assert torch.allclose(got, want, atol=1e-6)


def test_engine_with_a_tiny_budget_equals_the_direct_computation_exactly() -> None:
    torch.manual_seed(0)
    q, g = SetEmbedding(torch.randn(37, 2, 16)), SetEmbedding(torch.randn(45, 2, 16))
    sim = mil_max()
    assert sim.pair_bytes(q, g) == 2 * 2 * 4
    direct = sim(q, g)
    budget = 16 * 16 * sim.pair_bytes(q, g)  # the engine's smallest block: many blocks, ragged edges
    plan = plan_chunks(37, 45, sim.pair_bytes(q, g), budget)
    assert plan.rows < 37 and plan.cols < 45
    assert torch.equal(similarity_matrix(sim, q, g, max_bytes=budget, device="cpu"), direct)
    # top-k also holds each block row's running best k: give it the smallest budget its planner accepts
    scores, index = topk(sim, q, g, 5, max_bytes=4 * budget, device="cpu")
    want_s, _ = direct.sort(dim=1, descending=True, stable=True)
    assert torch.equal(scores, want_s[:, :5])
    assert torch.equal(direct.gather(1, index), scores)


def test_pair_bytes_counts_k_times_k_prime_cosines() -> None:
    q, g = SetEmbedding(torch.zeros(2, 3, 4)), SetEmbedding(torch.zeros(2, 5, 4))
    assert mil_max().pair_bytes(q, g) == 3 * 5 * 4


def test_wrong_inputs_fail_clearly() -> None:
    sim = mil_max()
    with pytest.raises(TypeError, match="MILMax needs SetEmbedding embeddings; the query is PointEmbedding"):
        sim(PointEmbedding(torch.zeros(2, 4)), SetEmbedding(torch.zeros(2, 1, 4)))
    with pytest.raises(ValueError, match="query dim 4 != gallery dim 3"):
        sim(SetEmbedding(torch.zeros(2, 1, 4)), SetEmbedding(torch.zeros(2, 1, 3)))
