"""HREM's neighbour batch sampler (the paper's "neighbor batch sampling"; the released code samples
random batches): k-means over the training images, then batches of P clusters × K images.

Each epoch every image with captions appears once, with one of its captions drawn at random (as
the core ``random_images`` sampler).  Images are shuffled within their cluster and cut into chunks
of K (``images_per_cluster``); what is left of each cluster (fewer than K) is pooled and cut into
mixed chunks; the chunks are shuffled and P = batch_size / K consecutive chunks make a batch (two
chunks of one cluster may meet in a batch).

Clustering (``cluster_on``):

* ``embeddings`` (default): before every epoch, the current model encodes every training image
  (``encode_images``: one forward pass per image in eval mode, no gradient) and k-means runs on
  those embeddings.  Cost per epoch: one image-encoder forward pass over the training images (a
  fraction of an epoch's training, which runs forward and backward for every caption) plus the
  k-means (N × num_clusters × D per Lloyd iteration).
* ``input_features``: once, on the input features (region features: their mean; images: the eval
  transform average-pooled to 8 × 8 per channel), reused every epoch.

Under ``torch.distributed`` only rank 0 clusters and the assignment is broadcast, so every process
draws the same global batches.  The global RNG is left untouched (forked) while clustering, so a
resumed run clusters and samples exactly as an uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from xmodalzoo.plugin_api import CaptionBatchSampler, ComponentConfig, encode_images

from .kmeans import kmeans

log = logging.getLogger("xmodalzoo.hrem")


class NeighbourBatchesConfig(ComponentConfig):
    """Options of HREM's neighbour batch sampler (batch = P clusters × K images, one caption each)."""

    images_per_cluster: int = Field(8, ge=1, description="K: images drawn from one cluster (batch_size must be a multiple)")
    num_clusters: int | None = Field(None, ge=1, description="k-means clusters (None: images / (4·K), at least batch_size / K)")
    cluster_on: Literal["embeddings", "input_features"] = Field(
        "embeddings", description="embeddings: the current model's image embeddings, re-clustered every epoch; "
        "input_features: the input features, clustered once")
    kmeans_iters: int = Field(20, ge=1, description="Lloyd iterations at most")
    encode_batch_size: int = Field(256, ge=1, description="images per batch when encoding for the clustering")
    drop_last: bool = Field(False, description="drop the last batch when it has fewer than batch_size images")


class NeighbourBatchSampler(CaptionBatchSampler):
    """Batches of P clusters × K images (one caption each); clusters from :meth:`prepare_epoch`."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, cfg: NeighbourBatchesConfig) -> None:
        c2i = np.asarray(dataset.caption_to_image, dtype=np.int64)
        super().__init__(len(c2i), batch_size, seed)
        k = cfg.images_per_cluster
        if batch_size % k:
            raise ValueError(f"hrem_neighbours: batch_size {batch_size} is not a multiple of images_per_cluster {k}")
        self.cfg, self.dataset = cfg, dataset
        self.by_image = np.argsort(c2i, kind="stable")
        self.images, self.starts, self.counts = np.unique(c2i[self.by_image], return_index=True, return_counts=True)
        self.num_images = int(dataset.num_images)
        self.clusters: np.ndarray | None = None  # (num_images,) cluster of every dataset image
        self.clustered_epoch: int | None = None
        self.last_cluster_seconds = 0.0

    def num_clusters(self) -> int:
        if self.cfg.num_clusters is not None:
            return min(self.cfg.num_clusters, len(self.images))
        k = self.cfg.images_per_cluster
        return max(1, min(len(self.images), max(self.batch_size // k, len(self.images) // (4 * k))))

    def prepare_epoch(self, epoch: int, method: Any) -> None:
        """Cluster for epoch ``epoch`` (every epoch on embeddings, once on input features)."""
        if self.clusters is not None and (self.cfg.cluster_on == "input_features" or self.clustered_epoch == epoch):
            return
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            assign = self._cluster(epoch, method) if _rank() == 0 else None
        self.clusters = _broadcast(assign, self.num_images, method)
        self.clustered_epoch = epoch
        self._cache = None  # the epoch's batches depend on the new clusters
        self.last_cluster_seconds = time.perf_counter() - t0
        log.info("hrem_neighbours: %d images in %d clusters for epoch %d (%.1f s)", self.num_images,
                 self.num_clusters(), epoch + 1, self.last_cluster_seconds)

    def _cluster(self, epoch: int, method: Any) -> np.ndarray:
        if self.cfg.cluster_on == "embeddings":
            emb = encode_images(method, self.dataset, batch_size=self.cfg.encode_batch_size, progress=False,
                                on_error="raise")
            points = torch.cat([t.flatten(1) for t in emb.tensors().values()], 1)
            seed = self.seed * 100_003 + epoch
        else:
            points = input_features(self.dataset, method.image_transform(False))
            seed = self.seed
        if len(points) != self.num_images:
            raise RuntimeError(f"hrem_neighbours: got {len(points)} image points for {self.num_images} images")
        device = getattr(method, "device", torch.device("cpu"))
        assign, _ = kmeans(points.to(device), self.num_clusters(), self.cfg.kmeans_iters, seed)
        return assign.numpy()

    def make_batches(self) -> list[np.ndarray]:
        if self.clusters is None:
            raise RuntimeError("hrem_neighbours: no clusters yet; call prepare_epoch(epoch, method) before drawing "
                               "batches (the trainer does)")
        rng = self.rng()
        k = self.cfg.images_per_cluster
        caption = self.by_image[self.starts + (rng.random(len(self.starts)) * self.counts).astype(np.int64)]
        perm = rng.permutation(len(self.images))  # positions into self.images / caption
        perm = perm[np.argsort(self.clusters[self.images[perm]], kind="stable")]  # grouped by cluster, shuffled within
        cluster = self.clusters[self.images[perm]]
        first = np.flatnonzero(np.concatenate([[True], cluster[1:] != cluster[:-1]]))
        size = np.diff(np.concatenate([first, [len(perm)]]))
        within = np.arange(len(perm)) - np.repeat(first, size)
        full = within < np.repeat(size // k * k, size)
        rest = perm[~full]
        chunks = perm[full].reshape(-1, k)
        n_rest = len(rest) // k * k
        chunks = np.concatenate([chunks, rest[:n_rest].reshape(-1, k)])
        order = np.concatenate([chunks[rng.permutation(len(chunks))].reshape(-1), rest[n_rest:]])
        captions = caption[order].astype(np.int64)
        n = len(captions) // self.batch_size * self.batch_size if self.cfg.drop_last else len(captions)
        return [captions[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def __len__(self) -> int:
        full, rest = divmod(len(self.images), self.batch_size)
        return full + (0 if self.cfg.drop_last or rest == 0 else 1)


def input_features(dataset: Any, transform: Any) -> torch.Tensor:
    """(N, F) one vector per image: the mean of its region features, or its image tensor pooled to 8 × 8."""
    rows = []
    for i in range(dataset.num_images):
        x = torch.as_tensor(transform(dataset.load_image(i)), dtype=torch.float32)
        if x.dim() == 3:
            x = F.adaptive_avg_pool2d(x, 8)
        elif x.dim() == 2:
            x = x.mean(0)
        rows.append(x.flatten())
    return torch.stack(rows)


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _broadcast(assign: np.ndarray | None, n: int, method: Any) -> np.ndarray:
    """Rank 0's assignment on every process (as is without torch.distributed)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        assert assign is not None
        return assign
    device = getattr(method, "device", torch.device("cpu")) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.as_tensor(assign, device=device) if assign is not None else torch.empty(n, dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return t.cpu().numpy()


def build_hrem_neighbours(cfg: NeighbourBatchesConfig, *, dataset: Any, batch_size: int,
                          seed: int) -> NeighbourBatchSampler:
    """HREM neighbour batches: k-means over images, P clusters × K images per batch (one caption each)."""
    return NeighbourBatchSampler(dataset, batch_size, seed, cfg)
