"""Data-parallel training across processes (``torchrun``): setup, embedding gathering, gradient sync.

Every process draws the same global batch and encodes its own slice.  Embeddings are gathered
*with gradients* so the loss sees the whole global batch (all cross-device negatives); every
process computes the same global loss, and gradients are averaged across processes after the
backward pass.  (The gather's backward sums the gradient of each slice over processes, and the
average divides by the number of processes, so the update equals a single-process step on the
global batch.)  Gradients are all-reduced by hand rather than through DDP so that parameters may
be frozen and unfrozen between epochs.

An image whose captions fall on two processes' slices is encoded by both; after gathering, only its
first copy (in rank order) is kept (:func:`gather_batch`), so the loss sees each image once, in
first-appearance order, exactly as one process collating the whole global batch would.  The other
copy gets no gradient, and the kept one gets the image's full gradient, so the summed update is
unchanged.  (With BatchNorm, a duplicated image still enters both processes' batch statistics.)
"""
from __future__ import annotations

import os
import pickle
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


def _per_item_aux(emb: Embedding) -> dict[str, torch.Tensor]:
    """The tensors of ``emb.aux`` with one row per item (what gathering and row selection carry along)."""
    n = len(emb)
    return {k: v for k, v in emb.aux.items() if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n}


def gather_embedding(emb: Embedding, world: int) -> Embedding:
    """The embeddings of every process, concatenated in rank order (differentiable)."""
    out = emb._replace(**{k: _gather_rows(v, world) for k, v in emb.tensors().items()})
    out.aux.update({k: _gather_rows(v, world) for k, v in _per_item_aux(emb).items()})
    return out


def first_copies(index: torch.Tensor) -> torch.Tensor:
    """Positions (sorted) of the first occurrence of each distinct value of the 1-d ``index``.

    The torch twin of :func:`xmodalzoo.data.loader.first_appearance` (numpy, in the loader workers):
    this one runs on the gathered batch on the device, inside the step, with no copy to the host.
    """
    n = index.shape[0]
    _, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(n, device=index.device)
    first = torch.full((int(inverse.max()) + 1 if n else 0,), n, dtype=positions.dtype, device=index.device)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return first.sort().values


def select_rows(emb: Embedding, rows: torch.Tensor) -> Embedding:
    """Items ``rows`` of ``emb``, with the per-item tensors of its ``aux`` (indexing alone drops aux)."""
    out = emb[rows]
    out.aux.update({k: v[rows] for k, v in _per_item_aux(emb).items()})
    return out


def gather_batch(img: Embedding, txt: Embedding, batch: Batch, world: int) -> tuple[Embedding, Embedding, torch.Tensor]:
    """The global batch: gathered image and caption embeddings (differentiable, rank order), each dataset
    image kept once (its first copy), and the (images, captions) positive mask."""
    img = gather_embedding(img, world)
    txt = gather_embedding(txt, world)
    index = _gather_rows(batch.image_index, world)
    cap_img = _gather_rows(batch.image_index[batch.caption_image], world)
    keep = first_copies(index)
    if keep.shape[0] < index.shape[0]:
        img, index = select_rows(img, keep), index[keep]
    return img, txt, index[:, None] == cap_img[None, :]


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


def raise_everywhere(error: BaseException | None, info: DistInfo) -> None:
    """Raise, on every process, the ``error`` the main process met (None: nothing to raise).

    A collective: every process calls it (the others' ``error`` is ignored), so a check that only the
    main process runs fails every process at once instead of leaving them waiting for it.
    """
    if info.enabled and dist.is_available() and dist.is_initialized():
        box: list[BaseException | None] = [None]
        if info.is_main and error is not None:
            try:
                pickle.loads(pickle.dumps(error))
                box[0] = error
            except Exception:  # an exception that does not pickle (or unpickle) goes as its message
                box[0] = RuntimeError(f"{type(error).__name__}: {error}")
        dist.broadcast_object_list(box, src=0)
        if not info.is_main:
            error = box[0]
    if error is not None:
        raise error


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
