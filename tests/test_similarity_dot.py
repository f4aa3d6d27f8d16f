"""The registered ``dot`` similarity against explicit loops: raw dot products, never re-normalised;
max over the K × K' pairs for sets; stored float16 vectors scored as the official scripts do."""
from __future__ import annotations

import pytest
import torch

from xmodalzoo.embeddings import GaussianEmbedding, PointEmbedding, SetEmbedding
from xmodalzoo.api import build_component as build
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY
from xmodalzoo.similarity.engine import similarity_matrix


def dot_loop(q: list[list[float]], g: list[list[float]]) -> float:
    """max over the vectors of q and of g of Σ_d q_d · g_d, in Python floats (float64)."""
    return max(sum(a * b for a, b in zip(x, y)) for x in q for y in g)


def reference(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(N, M) brute-force scores; rows of 2-d inputs are points, of 3-d inputs sets."""
    q = query.double().tolist()
    g = gallery.double().tolist()
    q = [[v] for v in q] if query.dim() == 2 else q
    g = [[v] for v in g] if gallery.dim() == 2 else g
    return torch.tensor([[dot_loop(a, b) for b in g] for a in q], dtype=torch.float64)


def test_registered_in_the_core_with_its_contract() -> None:
    discover()
    entry = REGISTRY.get("similarity", "dot")
    assert entry.plugin == "xmodalzoo"  # the core, like cosine
    assert entry.contract["accepts"] == ("point", "set")
    assert type(build("similarity", {"type": "dot"})).__name__ == "Dot"


def test_points_are_not_normalised() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 3
    g = torch.randn(5, 6, generator=gen, dtype=torch.float64) * 0.2
    out = build("similarity", {"type": "dot"})(PointEmbedding(q), PointEmbedding(g))
    assert torch.allclose(out, reference(q, g), rtol=0, atol=1e-12)
    cosine = build("similarity", {"type": "cosine"})(PointEmbedding(q), PointEmbedding(g))
    assert not torch.allclose(out, cosine)


def test_sets_take_the_best_pair_and_mix_with_points() -> None:
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(3, 2, 5, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    sim = build("similarity", {"type": "dot"})
    assert torch.allclose(sim(SetEmbedding(q), SetEmbedding(g)), reference(q, g), rtol=0, atol=1e-12)
    p = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    assert torch.allclose(sim(PointEmbedding(p), SetEmbedding(g)), reference(p, g), rtol=0, atol=1e-12)
    # K = 1 sets score exactly as points
    assert torch.equal(sim(SetEmbedding(p[:, None]), SetEmbedding(p[:, None])), sim(PointEmbedding(p), PointEmbedding(p)))


def test_stored_float16_vectors_are_scored_without_rounding_them_again() -> None:
    """float16 inputs: products exact in float32, the sum within float32 rounding of the float64 loop,
    whereas re-normalising (cosine) changes the numbers by the float16 norm error."""
    gen = torch.Generator().manual_seed(2)
    q = torch.nn.functional.normalize(torch.randn(16, 64, generator=gen), dim=-1).half()
    g = torch.nn.functional.normalize(torch.randn(20, 64, generator=gen), dim=-1).half()
    out = build("similarity", {"type": "dot"})(PointEmbedding(q), PointEmbedding(g))
    assert out.dtype == torch.float32
    assert (out.double() - reference(q, g)).abs().max() < 1e-6
    cosine = build("similarity", {"type": "cosine"})(PointEmbedding(q), PointEmbedding(g))
    assert (cosine.double() - reference(q, g)).abs().max() > 1e-5


@pytest.mark.parametrize("kind", ["point", "set"])
def test_engine_blocks_equal_one_call(kind: str) -> None:
    gen = torch.Generator().manual_seed(3)
    shape = (40, 16) if kind == "point" else (40, 2, 16)
    q = torch.randn(*shape, generator=gen)
    g = torch.randn(53, *shape[1:], generator=gen)
    make = PointEmbedding if kind == "point" else SetEmbedding
    sim = build("similarity", {"type": "dot"})
    full = similarity_matrix(sim, make(q), make(g), device="cpu", max_bytes=1 << 30)
    chunked = similarity_matrix(sim, make(q), make(g), device="cpu",
                                max_bytes=17 * 19 * sim.pair_bytes(make(q), make(g)))
    assert torch.equal(full, chunked)
    assert torch.allclose(full.double(), reference(q, g), atol=1e-5)


def test_rejects_gaussians_and_mismatched_dims() -> None:
    sim = build("similarity", {"type": "dot"})
    with pytest.raises(TypeError, match="PointEmbedding or SetEmbedding"):
        sim(GaussianEmbedding(torch.zeros(2, 3), torch.zeros(2, 3)), PointEmbedding(torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="dim"):
        sim(PointEmbedding(torch.zeros(2, 3)), PointEmbedding(torch.zeros(2, 4)))
