"""The faiss backends: flat equals brute force; IVF and HNSW have their recall measured against it;
without faiss the error says how to install it."""
from __future__ import annotations

import sys

import pytest
import torch

import xmodalzoo as zoo
from xmodalzoo.embeddings import PointEmbedding, SetEmbedding
from xmodalzoo.errors import MissingDependencyError
from xmodalzoo.search import FaissOptions, Searcher
from xmodalzoo.similarity.engine import topk

D = 32


def clustered(n: int, centers: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return centers[torch.randint(len(centers), (n,), generator=gen)] + 0.3 * torch.randn(n, *centers.shape[1:], generator=gen)


def recall(truth: torch.Tensor, found: torch.Tensor) -> float:
    return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(truth, found)) / truth.numel()


@pytest.fixture(scope="module")
def points():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(100, D, generator=gen)
    return PointEmbedding(clustered(40, centers, gen)), PointEmbedding(clustered(3000, centers, gen))


def test_flat_equals_brute_force(points):
    pytest.importorskip("faiss")
    query, gallery = points
    sim = zoo.build_component("similarity", {"type": "cosine"}).eval()
    want_s, want_i = topk(sim, query, gallery, 10, device="cpu")
    searcher = Searcher(sim, gallery, backend="faiss-flat")
    assert searcher.exact
    got_s, got_i = searcher.topk(query, 10)
    assert torch.equal(got_i, want_i)
    torch.testing.assert_close(got_s, want_s)


@pytest.mark.parametrize("backend,floor", [("faiss-ivf", 0.9), ("faiss-hnsw", 0.95)])
def test_approximate_indexes_recall(points, backend, floor):
    pytest.importorskip("faiss")
    query, gallery = points
    sim = zoo.build_component("similarity", {"type": "cosine"}).eval()
    _, want_i = topk(sim, query, gallery, 10, device="cpu")
    searcher = Searcher(sim, gallery, backend=backend, faiss_options=FaissOptions(threads=1))
    assert not searcher.exact
    _, got_i = searcher.topk(query, 10)
    assert recall(want_i, got_i) >= floor


def test_faiss_for_sets_keeps_mil_max_exact_with_flat():
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(1)
    query, gallery = SetEmbedding(torch.randn(10, 2, D, generator=gen)), SetEmbedding(torch.randn(500, 2, D, generator=gen))
    sim = zoo.build_component("similarity", {"type": "mil_max"}).eval()
    _, want_i = topk(sim, query, gallery, 5, device="cpu")
    _, got_i = Searcher(sim, gallery, backend="faiss-flat").topk(query, 5)
    assert torch.equal(got_i, want_i)


def test_without_faiss_the_error_says_how_to_install(points, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    sim = zoo.build_component("similarity", {"type": "cosine"}).eval()
    with pytest.raises(MissingDependencyError, match=r"pip install 'xmodalzoo\[search\]'"):
        Searcher(sim, points[1], backend="faiss-hnsw")
    # the default backend never needs it
    assert Searcher(sim, points[1]).topk(points[0], 3)[1].shape == (40, 3)
