"""k-means and the neighbour batch sampler: clusters recovered, P clusters × K images per batch, every
image once per epoch with one of its captions, determinism, re-clustering per epoch, clear errors."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from xmodalzoo_hrem.kmeans import kmeans
from xmodalzoo_hrem.sampler import NeighbourBatchesConfig, NeighbourBatchSampler


def blobs(sizes: list[int], dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(sizes), dim, generator=gen) * 10
    points = torch.cat([c + 0.1 * torch.randn(n, dim, generator=gen) for c, n in zip(centres, sizes)])
    return points, np.repeat(np.arange(len(sizes)), sizes)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_separated_clusters_deterministically() -> None:
    points, truth = blobs([30, 12, 25, 7])
    assign, centroids = kmeans(points, 4, iters=20, seed=3)
    assert same_partition(assign.numpy(), truth) and centroids.shape == (4, 5)
    again, _ = kmeans(points, 4, iters=20, seed=3)
    assert torch.equal(assign, again)
    # more clusters than distinct points: every cluster still gets a point, nothing breaks
    few = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    a, _ = kmeans(few, 3, seed=0)
    assert a[0] == a[1] != a[2]


class BlobDataset:
    """``num_images`` region-feature 'images' (2 regions each) in blobs; image i has 1 + i % 3 captions."""

    def __init__(self, sizes: list[int]) -> None:
        self.points, self.truth = blobs(sizes, dim=4)
        self.num_images = len(self.points)
        self.caption_to_image = np.repeat(np.arange(self.num_images), 1 + np.arange(self.num_images) % 3)
        self.num_captions = len(self.caption_to_image)

    def load_image(self, i: int) -> np.ndarray:
        return np.stack([self.points[i].numpy() - 0.01, self.points[i].numpy() + 0.01])


class IdentityMethod:
    device = torch.device("cpu")

    def image_transform(self, train: bool = False) -> Any:
        return lambda x: torch.as_tensor(x)


def sampler(sizes: list[int], batch_size: int = 8, k: int = 4, seed: int = 0, **cfg: Any) -> NeighbourBatchSampler:
    config = NeighbourBatchesConfig(images_per_cluster=k, num_clusters=len(sizes), cluster_on="input_features", **cfg)
    return NeighbourBatchSampler(BlobDataset(sizes), batch_size, seed, config)


def test_batches_are_p_clusters_of_k_images_with_one_caption_each() -> None:
    s = sampler([8, 12, 16, 4])  # every cluster a multiple of K = 4: all chunks are pure
    s.prepare_epoch(0, IdentityMethod())
    assert same_partition(s.clusters, s.dataset.truth)
    batches = s.global_batches()
    c2i = s.dataset.caption_to_image
    images = np.concatenate([c2i[b] for b in batches])
    assert sorted(images.tolist()) == list(range(s.dataset.num_images))  # every image once, by one of its captions
    assert [len(b) for b in batches] == [8] * 5 and len(s) == 5
    for b in batches:
        chunks = s.clusters[c2i[b]].reshape(2, 4)  # P = 2 chunks of K = 4
        assert (chunks == chunks[:, :1]).all()


def test_leftovers_are_pooled_and_the_last_batch_may_be_short() -> None:
    s = sampler([6, 5, 9], batch_size=8, k=4)
    s.prepare_epoch(0, IdentityMethod())
    c2i = s.dataset.caption_to_image
    batches = s.global_batches()
    assert sum(len(b) for b in batches) == 20 and len(batches[-1]) == 4 and len(s) == 3
    chunks = np.concatenate([s.clusters[c2i[b]] for b in batches]).reshape(-1, 4)
    pure = (chunks == chunks[:, :1]).all(1)
    assert pure.sum() == 4  # 6 + 5 + 9 images give 1 + 1 + 2 pure chunks of 4; the 2 + 1 + 1 leftovers mix
    dropped = sampler([6, 5, 9], batch_size=8, k=4, drop_last=True)
    dropped.prepare_epoch(0, IdentityMethod())
    assert [len(b) for b in dropped.global_batches()] == [8, 8] and len(dropped) == 2


def test_batches_are_deterministic_and_change_with_the_epoch() -> None:
    a, b = sampler([8, 12, 16, 4]), sampler([8, 12, 16, 4])
    for s in (a, b):
        s.prepare_epoch(0, IdentityMethod())
    assert all(np.array_equal(x, y) for x, y in zip(a.global_batches(), b.global_batches()))
    first = [x.copy() for x in a.global_batches()]
    a.prepare_epoch(1, IdentityMethod())  # input features: clustered once, not again
    a.set_epoch(1)
    assert not all(np.array_equal(x, y) for x, y in zip(first, a.global_batches()))


def test_embeddings_are_reclustered_every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    s = NeighbourBatchSampler(BlobDataset([8, 8]), 8, 0, NeighbourBatchesConfig(images_per_cluster=4, num_clusters=2))
    calls = []

    def fake_cluster(epoch: int, method: Any) -> np.ndarray:
        calls.append(epoch)
        return (np.arange(16) + epoch) % 2

    monkeypatch.setattr(s, "_cluster", fake_cluster)
    s.prepare_epoch(0, None)
    before = [x.copy() for x in s.global_batches()]
    s.prepare_epoch(0, None)  # same epoch: nothing recomputed, the cached batches stay
    assert calls == [0] and s.global_batches() is s._cache[1]
    s.prepare_epoch(1, None)
    assert calls == [0, 1] and s._cache is None  # new clusters: the epoch's batches are drawn again
    assert not all(np.array_equal(x, y) for x, y in zip(before, s.global_batches()))


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="multiple of images_per_cluster"):
        sampler([8, 8], batch_size=6, k=4)
    with pytest.raises(RuntimeError, match="prepare_epoch"):
        sampler([8, 8]).global_batches()
