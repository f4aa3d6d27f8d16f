"""The training batches: the sampler of the global batches and this process's loader of them."""
from __future__ import annotations

from typing import Any

from ..data.base import RetrievalDataset
from ..data.loader import TrainLoader, build_train_loader, check_compatible
from ..data.samplers import CaptionBatchSampler
from ..method import Method
from ..registry import REGISTRY
from .distributed import DistInfo


def training_batches(recipe: Any, dataset: RetrievalDataset, method: Method,
                     dist: DistInfo, workers: int = 0) -> tuple[CaptionBatchSampler, TrainLoader]:
    """The sampler ``recipe.train.sampler`` over ``dataset`` (the same global batches on every
    process) and the loader of this process's shard of each batch, with ``method``'s training-time
    image transform and tokenizer, loaded by ``workers`` single-threaded worker processes (the number
    :mod:`xmodalzoo.train.threads` chose from ``train.num_workers``)."""
    cfg = recipe.train
    check_compatible(dataset, getattr(method.image_encoder, "input_kind", None))
    sampler = REGISTRY.build("sampler", cfg.sampler, dataset=dataset, batch_size=cfg.batch_size, seed=recipe.seed)
    local = sampler.shard(dist.rank, dist.world_size) if dist.enabled else sampler
    loader = build_train_loader(
        dataset, local, image_transform=method.image_transform(train=True), tokenizer=method.tokenizer,
        num_workers=workers, on_error=getattr(recipe.data, "on_error", "raise"),
    )
    return sampler, loader
