"""The chunked similarity engine: equal to the unchunked result for every registered similarity,
within its memory budget, and deterministic; ranking helpers against brute force."""
import numpy as np
import pytest
import torch

import xmodalzoo as zoo
from xmodalzoo.embeddings import GaussianEmbedding, PointEmbedding, SetEmbedding
from xmodalzoo.method import build
from xmodalzoo.similarity import (
    Cosine, argsort_desc, plan_chunks, positive_ranks, similarity_matrix, topk, topk_desc,
)


def random_embeddings(sim, n, seed):
    g = torch.Generator().manual_seed(seed)
    accepts = sim.accepts
    if any(issubclass(c, GaussianEmbedding) for c in accepts):
        return GaussianEmbedding(torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g) - 2)
    if any(issubclass(c, SetEmbedding) for c in accepts):
        return SetEmbedding(torch.nn.functional.normalize(torch.randn(n, 3, 8, generator=g), dim=-1))
    return PointEmbedding(torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=-1))


SIMILARITIES = zoo.list_components("similarity")


@pytest.mark.parametrize("name", SIMILARITIES)
def test_chunked_equals_unchunked(name):
    sim = build("similarity", {"type": name})
    q, g = random_embeddings(sim, 37, 0), random_embeddings(sim, 53, 1)
    full = similarity_matrix(sim, q, g, max_bytes=1 << 30, device="cpu")
    per_pair = sim.pair_bytes(sim.prepare(q), sim.prepare(g))
    for budget in (per_pair * 16 * 16, per_pair * 16 * 21, per_pair * 53 * 20 + 5):
        chunked = similarity_matrix(sim, q, g, max_bytes=budget, device="cpu")
        assert torch.equal(full, chunked), f"{name} differs at max_bytes={budget}"
    again = similarity_matrix(sim, q, g, max_bytes=per_pair * 16 * 16, device="cpu")
    assert torch.equal(full, again), f"{name} is not deterministic"
    assert full.shape == (37, 53)


@pytest.mark.parametrize("name", SIMILARITIES)
def test_memory_budget_respected(name):
    sim = build("similarity", {"type": name})
    q, g = random_embeddings(sim, 40, 2), random_embeddings(sim, 50, 3)
    seen = []
    forward = sim.forward

    def recording(a, b):
        seen.append((len(a), len(b)))
        return forward(a, b)

    sim.forward = recording
    per_pair = sim.pair_bytes(sim.prepare(q), sim.prepare(g))
    budget = per_pair * 16 * 20
    similarity_matrix(sim, q, g, max_bytes=budget, device="cpu")
    assert len(seen) > 1 and all(a * b * per_pair <= budget for a, b in seen)
    assert len(set(seen)) == 1  # equal-shaped blocks (the last ones overlap their neighbours)
    assert sum(a * b for a, b in seen) >= 40 * 50


def test_budget_too_small_is_clear():
    with pytest.raises(ValueError, match="smaller than"):
        plan_chunks(40, 40, pair_bytes=64, max_bytes=1000)


def test_cosine_values_and_type_check():
    q = PointEmbedding(torch.tensor([[3.0, 4.0]]))
    g = PointEmbedding(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert torch.allclose(Cosine()(q, g), torch.tensor([[0.6, 0.8]]))
    with pytest.raises(TypeError, match="needs PointEmbedding"):
        Cosine()(SetEmbedding(torch.zeros(1, 2, 2)), g)


def brute_topk(scores, k):
    out = []
    for row in scores.tolist():
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        out.append(order[:k])
    return torch.tensor(out)


def test_topk_streaming_matches_brute_force_with_ties():
    torch.manual_seed(0)
    q = PointEmbedding(torch.randn(40, 4).round())
    g = PointEmbedding(torch.randn(70, 4).round())  # rounding creates ties
    sim = Cosine()
    full = similarity_matrix(sim, q, g, device="cpu")
    for budget in (4 * 16 * 22, 4 * 16 * 40, 1 << 20):
        s, i = topk(sim, q, g, 6, max_bytes=budget, device="cpu")
        assert torch.equal(i, brute_topk(full, 6))
        assert torch.equal(s, full.gather(1, i))
    s2, i2 = topk_desc(full, 6, chunk_rows=4)
    assert torch.equal(i2, brute_topk(full, 6))


def test_argsort_and_positive_ranks_brute_force():
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.integers(0, 4, size=(7, 12)).astype(np.float32))  # many ties
    positives = torch.tensor(rng.random((7, 12)) < 0.2)
    positives[0] = False
    order = argsort_desc(scores, chunk_rows=3)
    ranks = positive_ranks(scores, positives, chunk_rows=2)
    for r in range(7):
        expect = sorted(range(12), key=lambda j: (-scores[r, j].item(), j))
        assert order[r].tolist() == expect
        pos = [expect.index(j) for j in range(12) if positives[r, j]]
        assert ranks[r].item() == (min(pos) if pos else 12)
