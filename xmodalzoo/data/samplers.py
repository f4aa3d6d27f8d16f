"""Batch samplers: each yields, per batch, a list of CAPTION indices of the dataset.

Every sampler is deterministic given ``seed`` and the epoch (:meth:`CaptionBatchSampler.set_epoch`).

Distributed training: every process builds the same sampler (same seed), so all of them draw the
same *global* batch; :meth:`CaptionBatchSampler.shard` gives the view for one process, which takes a
contiguous slice of about 1/world of each global batch (rank r: positions ``r·n/w`` to
``(r+1)·n/w``; ``image_captions`` cuts between images so an image's captions stay on one process).
A global batch too small to give every process something is dropped by the shards, so all processes
run the same number of steps.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from pydantic import Field

from ..config import ComponentConfig
from .base import RetrievalDataset


class CaptionBatchSampler:
    """Base class: subclasses implement :meth:`global_batches` for one epoch."""

    def __init__(self, num_captions: int, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_captions < 1:
            raise ValueError("the dataset has no captions to sample")
        self.num_captions = num_captions
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (a function of seed and epoch only)."""
        self.epoch = int(epoch)

    def prepare_epoch(self, epoch: int, method: Any) -> None:
        """Hook called by the trainer on every process before epoch ``epoch`` is drawn.

        A sampler whose batches depend on the model (e.g. neighbour batches clustered from the
        current image embeddings) recomputes what it needs here; it must give the same result on
        every process.  The default does nothing.
        """

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def global_batches(self) -> list[np.ndarray]:
        """The epoch's batches (int64 caption indices), the same for every process."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.make_batches())
        return self._cache[1]

    def make_batches(self) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def cut_points(self, batch: np.ndarray, world_size: int) -> np.ndarray:
        """Where the slices of ``batch`` for ``world_size`` processes start and end (world_size + 1 points)."""
        return np.arange(world_size + 1) * len(batch) // world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self.global_batches())

    def shard(self, rank: int, world_size: int) -> "ShardedSampler":
        """The part of every global batch that process ``rank`` of ``world_size`` handles."""
        return ShardedSampler(self, rank, world_size)


class ShardedSampler:
    """One process's contiguous slice of each global batch of ``parent`` (see the module docs)."""

    def __init__(self, parent: CaptionBatchSampler, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.parent, self.rank, self.world_size = parent, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.parent.set_epoch(epoch)

    def _batches(self) -> Iterator[np.ndarray]:
        for batch in self.parent.global_batches():
            cuts = self.parent.cut_points(batch, self.world_size)
            if np.any(np.diff(cuts) == 0):
                continue  # some process would get an empty batch
            yield batch[cuts[self.rank]:cuts[self.rank + 1]]

    def __iter__(self) -> Iterator[list[int]]:
        for part in self._batches():
            yield part.tolist()

    def __len__(self) -> int:
        return sum(1 for _ in self._batches())


def _chunks(order: np.ndarray, size: int, drop_last: bool) -> list[np.ndarray]:
    n = len(order) // size * size if drop_last else len(order)
    return [order[i:i + size] for i in range(0, n, size)]


# --------------------------------------------------------------------------- random_captions
class RandomCaptionsConfig(ComponentConfig):
    """Every caption once per epoch, in random order."""

    drop_last: bool = Field(False, description="drop the last batch when it is smaller than batch_size")


class RandomCaptionsSampler(CaptionBatchSampler):
    """Batches of ``batch_size`` captions; every caption once per epoch in a random order."""

    def __init__(self, num_captions: int, batch_size: int, seed: int, drop_last: bool = False) -> None:
        super().__init__(num_captions, batch_size, seed)
        self.drop_last = drop_last

    def make_batches(self) -> list[np.ndarray]:
        return _chunks(self.rng().permutation(self.num_captions).astype(np.int64), self.batch_size, self.drop_last)

    def __len__(self) -> int:
        full, rest = divmod(self.num_captions, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)


def build_random_captions(cfg: RandomCaptionsConfig, *, dataset: RetrievalDataset, batch_size: int,
                          seed: int) -> RandomCaptionsSampler:
    """Every caption once per epoch in random order, batch_size captions per batch (default)."""
    return RandomCaptionsSampler(dataset.num_captions, batch_size, seed, cfg.drop_last)


# --------------------------------------------------------------------------- random_images
class RandomImagesConfig(ComponentConfig):
    """Every image once per epoch with one of its captions drawn at random (short epochs)."""

    drop_last: bool = Field(False, description="drop the last batch when it is smaller than batch_size")


class RandomImagesSampler(CaptionBatchSampler):
    """Batches of ``batch_size`` captions from distinct images; each image once per epoch."""

    def __init__(self, caption_to_image: np.ndarray, batch_size: int, seed: int, drop_last: bool = False) -> None:
        super().__init__(len(caption_to_image), batch_size, seed)
        self.drop_last = drop_last
        order = np.argsort(caption_to_image, kind="stable")
        images, starts, counts = np.unique(caption_to_image[order], return_index=True, return_counts=True)
        self.order, self.starts, self.counts = order, starts, counts

    def make_batches(self) -> list[np.ndarray]:
        rng = self.rng()
        pick = self.order[self.starts + (rng.random(len(self.starts)) * self.counts).astype(np.int64)]
        return _chunks(pick[rng.permutation(len(pick))].astype(np.int64), self.batch_size, self.drop_last)

    def __len__(self) -> int:
        full, rest = divmod(len(self.starts), self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)


def build_random_images(cfg: RandomImagesConfig, *, dataset: RetrievalDataset, batch_size: int,
                        seed: int) -> RandomImagesSampler:
    """Every image once per epoch, with one random caption each; batch_size captions per batch."""
    return RandomImagesSampler(np.asarray(dataset.caption_to_image), batch_size, seed, cfg.drop_last)


# --------------------------------------------------------------------------- image_captions
class ImageCaptionsConfig(ComponentConfig):
    """batch_size images per batch, each with ALL its captions (DivE: 200 images × 5 captions)."""

    drop_last: bool = Field(False, description="drop the last batch when it has fewer than batch_size images")


class ImageCaptionsSampler(CaptionBatchSampler):
    """``batch_size`` counts IMAGES: each batch holds every caption of ``batch_size`` random images,
    grouped by image; each caption appears once per epoch.  Images without captions are never drawn.
    """

    def __init__(self, caption_to_image: np.ndarray, batch_size: int, seed: int, drop_last: bool = False) -> None:
        c2i = np.asarray(caption_to_image, dtype=np.int64)
        super().__init__(len(c2i), batch_size, seed)
        self.drop_last = drop_last
        self.caption_to_image = c2i
        self.by_image = np.argsort(c2i, kind="stable")  # caption indices grouped by image
        counts = np.bincount(c2i)
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.images = np.flatnonzero(counts > 0)

    def make_batches(self) -> list[np.ndarray]:
        groups = _chunks(self.rng().permutation(self.images), self.batch_size, self.drop_last)
        return [self._captions_of(images) for images in groups]

    def _captions_of(self, images: np.ndarray) -> np.ndarray:
        lens = self.counts[images]
        ends = np.cumsum(lens)
        within = np.arange(ends[-1]) - np.repeat(ends - lens, lens)
        return self.by_image[np.repeat(self.starts[images], lens) + within]

    def cut_points(self, batch: np.ndarray, world_size: int) -> np.ndarray:
        """Cut between images: process r takes images ``r·m/w`` to ``(r+1)·m/w`` of the batch's m images."""
        image_of = self.caption_to_image[batch]
        firsts = np.flatnonzero(np.concatenate([[True], image_of[1:] != image_of[:-1]]))
        bounds = np.concatenate([firsts, [len(batch)]])
        return bounds[np.arange(world_size + 1) * len(firsts) // world_size]

    def __len__(self) -> int:
        full, rest = divmod(len(self.images), self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)


def build_image_captions(cfg: ImageCaptionsConfig, *, dataset: RetrievalDataset, batch_size: int,
                         seed: int) -> ImageCaptionsSampler:
    """batch_size IMAGES per batch with all their captions (DivE); every caption once per epoch."""
    return ImageCaptionsSampler(dataset.caption_to_image, batch_size, seed, cfg.drop_last)


# --------------------------------------------------------------------------- class_balanced
class ClassBalancedConfig(ComponentConfig):
    """At most one caption per class in a batch (CUB)."""

    drop_last: bool = Field(True, description="drop captions left when fewer than batch_size classes remain; "
                                              "false: yield them as smaller batches of distinct classes")


class ClassBalancedSampler(CaptionBatchSampler):
    """Each batch: ``batch_size`` captions of ``batch_size`` distinct classes.

    Classes are drawn without replacement, with probability proportional to their captions not yet
    used this epoch, so classes run out together; each caption is used at most once per epoch.  When
    fewer than ``batch_size`` classes have captions left, those captions are dropped
    (``drop_last``) or yielded in smaller batches, one caption per remaining class each.
    """

    def __init__(self, caption_classes: np.ndarray, batch_size: int, seed: int, drop_last: bool = True) -> None:
        classes = np.asarray(caption_classes, dtype=np.int64)
        super().__init__(len(classes), batch_size, seed)
        _, self.class_of = np.unique(classes, return_inverse=True)
        self.num_classes = int(self.class_of.max()) + 1
        if batch_size > self.num_classes:
            raise ValueError(f"class_balanced: batch_size {batch_size} exceeds the number of classes "
                             f"({self.num_classes}); a batch holds at most one caption per class")
        self.drop_last = drop_last

    def make_batches(self) -> list[np.ndarray]:
        rng = self.rng()
        order = rng.permutation(self.num_captions)
        order = order[np.argsort(self.class_of[order], kind="stable")]  # shuffled within each class
        counts = np.bincount(self.class_of, minlength=self.num_classes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        left = counts.copy()
        batches = []
        while np.count_nonzero(left) >= self.batch_size:
            chosen = rng.choice(self.num_classes, size=self.batch_size, replace=False, p=left / left.sum())
            left[chosen] -= 1
            batches.append(order[starts[chosen] + left[chosen]])
        if not self.drop_last:
            while left.any():
                chosen = rng.permutation(np.flatnonzero(left))
                left[chosen] -= 1
                batches.append(order[starts[chosen] + left[chosen]])
        return batches


def build_class_balanced(cfg: ClassBalancedConfig, *, dataset: RetrievalDataset, batch_size: int,
                         seed: int) -> ClassBalancedSampler:
    """At most one caption per class in each batch (CUB); needs dataset.caption_classes."""
    classes = getattr(dataset, "caption_classes", None)
    if classes is None:
        raise ValueError(f"the class_balanced sampler needs a dataset with caption_classes (one int class per "
                         f"caption); {dataset!r} has none; use random_captions or a dataset with classes")
    classes = np.asarray(classes)
    if classes.shape != (dataset.num_captions,) or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"{dataset!r}: caption_classes must be an int array of shape ({dataset.num_captions},), "
                         f"got {classes.dtype} {classes.shape}")
    return ClassBalancedSampler(classes, batch_size, seed, cfg.drop_last)


def register_samplers(r: Any) -> None:
    r.add("sampler", "random_captions", build_random_captions, RandomCaptionsConfig)
    r.add("sampler", "image_captions", build_image_captions, ImageCaptionsConfig)
    r.add("sampler", "random_images", build_random_images, RandomImagesConfig)
    r.add("sampler", "class_balanced", build_class_balanced, ClassBalancedConfig)
