"""Data-parallel training across processes (``torchrun``): setup, embedding gathering, gradient sync.

Every process draws the same global batch and encodes its own slice.  Embeddings are gathered
*with gradients* so the loss sees the whole global batch (all cross-device negatives); every
process computes the same global loss, and gradients are averaged across processes after the
backward pass.  (The gather's backward sums the gradient of each slice over processes, and the
average divides by the number of processes, so the update equals a single-process step on the
global batch.)  Gradients are all-reduced by hand rather than through DDP so that parameters may
be frozen and unfrozen between epochs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from ..data.batch import Batch
from ..embeddings import Embedding


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return DistInfo(rank, world, local_rank)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _gather_rows(t: torch.Tensor, world: int) -> torch.Tensor:
    """All-gather along dim 0 with gradients; slices may differ in length between processes."""
    from torch.distributed.nn.functional import all_gather

    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    pad = max(sizes_i) - t.shape[0]
    if pad:
        t = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))])
    parts = all_gather(t)
    return torch.cat([p[:s] for p, s in zip(parts, sizes_i)])


def gather_embedding(emb: Embedding, world: int) -> Embedding:
    """The embeddings of every process, concatenated in rank order (differentiable)."""
    out = emb._replace(**{k: _gather_rows(v, world) for k, v in emb.tensors().items()})
    n = len(emb)
    for k, v in emb.aux.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n:
            out.aux[k] = _gather_rows(v, world)
    return out


def gather_positives(batch: Batch, world: int) -> torch.Tensor:
    """(global images, global captions) positive mask of the global batch."""
    img = _gather_rows(batch.image_index, world)
    cap_img = _gather_rows(batch.image_index[batch.caption_image], world)
    return img[:, None] == cap_img[None, :]


def all_reduce_grads(params: Iterable[torch.nn.Parameter], world: int) -> None:
    """Average gradients over processes (one flat buffer per call)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
