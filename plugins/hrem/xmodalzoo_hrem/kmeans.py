"""Deterministic k-means in torch (k-means++ seeding, Lloyd iterations) for HREM's neighbour batches.

Distances are computed on the points' device (one matmul per block of points); centroid sums are
accumulated on the CPU, where ``index_add_`` is deterministic, so the same points and seed give
the same clusters on every run and process.
"""
from __future__ import annotations

import torch


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(N, K) ‖x_n − c_k‖² via ‖x‖² + ‖c‖² − 2 x·c, clamped at 0."""
    return (x.pow(2).sum(1, keepdim=True) + centroids.pow(2).sum(1)[None, :] - 2 * x @ centroids.t()).clamp(min=0)


def nearest(x: torch.Tensor, centroids: torch.Tensor, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (N,) of each point's nearest centroid and the squared distance (N,), in blocks of points."""
    idx, dist = [], []
    for s in range(0, len(x), block):
        d = squared_distances(x[s:s + block], centroids)
        best = d.min(1)
        idx.append(best.indices)
        dist.append(best.values)
    return torch.cat(idx), torch.cat(dist)


def kmeans_pp_init(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k initial centroids (k, D) by k-means++ D² sampling (Arthur & Vassilvitskii 2007)."""
    n = len(x)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    best = squared_distances(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        probs = best.double().cpu()
        if float(probs.sum()) <= 0:  # fewer distinct points than clusters: take an unused point
            unused = torch.ones(n, dtype=torch.bool)
            unused[chosen] = False
            nxt = int(unused.nonzero()[0]) if unused.any() else 0
        else:
            nxt = int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
        chosen.append(nxt)
        best = torch.minimum(best, squared_distances(x, x[nxt:nxt + 1])[:, 0])
    return x[chosen].clone()


def kmeans(x: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster (N, D) points into ``k`` clusters; returns the (N,) assignment (CPU, int64) and the (k, D) centroids.

    Lloyd iterations stop early once no assignment changes; an empty cluster is re-seeded with the
    point farthest from its centroid.
    """
    if x.dim() != 2 or len(x) == 0:
        raise ValueError(f"k-means needs (N, D) points with N >= 1, got {tuple(x.shape)}")
    k = min(k, len(x))
    x = x.float()
    gen = torch.Generator().manual_seed(int(seed))
    centroids = kmeans_pp_init(x, k, gen)
    x_cpu = x.cpu()
    assign = torch.full((len(x),), -1, dtype=torch.long)
    for _ in range(max(1, iters)):
        new, dist = nearest(x, centroids)
        new, dist = new.cpu(), dist.cpu()
        if torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros(k, x.shape[1]).index_add_(0, assign, x_cpu)
        cent = sums / counts.clamp(min=1)[:, None]
        for empty in (counts == 0).nonzero().flatten().tolist():
            far = int(dist.argmax())
            cent[empty] = x_cpu[far]
            dist[far] = -1.0
        centroids = cent.to(x.device)
    return assign, centroids
