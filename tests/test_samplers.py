"""Batch samplers: coverage per epoch, determinism, DDP shards, image grouping, class balance."""
from __future__ import annotations

import numpy as np
import pytest

from xmodalzoo.data.base import RetrievalDataset
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY


class FakeDataset(RetrievalDataset):
    """Captions per image given by ``counts`` (image 2 has none), optional caption classes."""

    def __init__(self, counts: list[int], classes: np.ndarray | None = None) -> None:
        self.caption_to_image = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
        self.image_ids = list(range(len(counts)))
        self.captions = [f"c{i}" for i in range(len(self.caption_to_image))]
        self.caption_ids = list(range(len(self.captions)))
        if classes is not None:
            self.caption_classes = classes


COUNTS = [5, 3, 0, 5, 1, 5, 2, 5, 4, 5, 5, 1, 5]  # 46 captions, one image without captions


def sampler(name: str, dataset: RetrievalDataset, batch_size: int, seed: int = 0, **cfg):  # type: ignore[no-untyped-def]
    discover()
    return REGISTRY.get("sampler", name).build(cfg, dataset=dataset, batch_size=batch_size, seed=seed)


def epoch(s) -> list[list[int]]:  # type: ignore[no-untyped-def]
    batches = list(s)
    assert len(batches) == len(s)
    return batches


def test_random_captions_each_caption_once_per_epoch() -> None:
    ds = FakeDataset(COUNTS)
    s = sampler("random_captions", ds, batch_size=8)
    batches = epoch(s)
    assert [len(b) for b in batches] == [8] * 5 + [6]
    assert sorted(sum(batches, [])) == list(range(46))
    assert all(isinstance(i, int) for i in batches[0])
    dropped = epoch(sampler("random_captions", ds, batch_size=8, drop_last=True))
    assert [len(b) for b in dropped] == [8] * 5 and len(set(sum(dropped, []))) == 40


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    ds = FakeDataset(COUNTS)
    for name in ("random_captions", "image_captions"):
        a, b = sampler(name, ds, 4, seed=1), sampler(name, ds, 4, seed=1)
        first = epoch(a)
        assert first == epoch(b) == epoch(a)
        a.set_epoch(1)
        assert epoch(a) != first
        b.set_epoch(3)
        b.set_epoch(1)
        assert epoch(a) == epoch(b)
        assert epoch(sampler(name, ds, 4, seed=2)) != first


@pytest.mark.parametrize("name,batch_size", [("random_captions", 7), ("image_captions", 4)])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_reassemble_the_global_batch(name: str, batch_size: int, world_size: int) -> None:
    ds = FakeDataset(COUNTS)
    s = sampler(name, ds, batch_size, seed=5)
    s.set_epoch(2)
    shards = [s.shard(r, world_size) for r in range(world_size)]
    shards[0].set_epoch(2)  # same epoch through a shard: the parent is shared
    per_rank = [epoch(sh) for sh in shards]
    assert len({len(p) for p in per_rank}) == 1, "every process runs the same number of steps"
    global_batches = [b for b in epoch(s) if len(b) >= world_size]
    for step, full in enumerate(global_batches):
        parts = [per_rank[r][step] for r in range(world_size)]
        assert sum(parts, []) == full  # rank r holds the r-th contiguous slice
        assert all(parts)
        if name == "random_captions":
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        else:  # an image's captions never straddle two processes
            owners = {}
            for r, part in enumerate(parts):
                for c in part:
                    assert owners.setdefault(int(ds.caption_to_image[c]), r) == r


def test_shards_drop_a_global_batch_too_small_to_split() -> None:
    s = sampler("random_captions", FakeDataset(COUNTS), 15)  # batches of 15, 15, 15, 1
    assert len(s) == 4
    shards = [s.shard(r, 2) for r in range(2)]
    assert [len(sh) for sh in shards] == [3, 3]
    assert sum((b for sh in shards for b in sh), []) != [] and all(len(b) in (7, 8) for sh in shards for b in sh)


def test_shard_rejects_bad_rank() -> None:
    s = sampler("random_captions", FakeDataset(COUNTS), 4)
    with pytest.raises(ValueError, match="rank"):
        s.shard(2, 2)


def test_image_captions_keeps_all_captions_of_an_image_together() -> None:
    ds = FakeDataset(COUNTS)
    s = sampler("image_captions", ds, batch_size=3, seed=4)
    batches = epoch(s)
    assert len(batches) == 4  # 12 images with captions, 3 per batch
    assert sorted(sum(batches, [])) == list(range(46))
    for b in batches:
        images = ds.caption_to_image[b]
        distinct = list(dict.fromkeys(images.tolist()))
        assert len(distinct) <= 3 and 2 not in distinct
        for image in distinct:
            positions = np.flatnonzero(images == image)
            assert len(positions) == COUNTS[image]  # every caption of the image
            assert np.all(np.diff(positions) == 1)  # contiguous
    assert len(epoch(sampler("image_captions", ds, batch_size=5, drop_last=True))) == 2


def test_class_balanced_one_caption_per_class() -> None:
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 6, size=46) * 10 + 3  # arbitrary class labels, uneven sizes
    ds = FakeDataset(COUNTS, classes)
    s = sampler("class_balanced", ds, batch_size=4, drop_last=False)
    batches = epoch(s)
    for b in batches:
        assert len(set(classes[b].tolist())) == len(b)
    assert sorted(sum(batches, [])) == list(range(46))
    full = epoch(sampler("class_balanced", ds, batch_size=4))
    assert all(len(b) == 4 for b in full) and len(set(sum(full, []))) == 4 * len(full)
    for b in full:
        assert len(set(classes[b].tolist())) == 4
    assert epoch(sampler("class_balanced", ds, batch_size=4)) == full


def test_class_balanced_needs_classes() -> None:
    with pytest.raises(ValueError, match="needs a dataset with caption_classes"):
        sampler("class_balanced", FakeDataset(COUNTS), 4)
    with pytest.raises(ValueError, match=r"int array of shape \(46,\)"):
        sampler("class_balanced", FakeDataset(COUNTS, np.zeros(3, dtype=np.int64)), 4)
    with pytest.raises(ValueError, match="exceeds the number of classes"):
        sampler("class_balanced", FakeDataset(COUNTS, np.arange(46) % 3), 4)


def test_random_images_each_image_once_with_own_caption():
    import numpy as np

    from xmodalzoo.data.samplers import RandomImagesSampler

    cap2img = np.repeat(np.arange(23), 5)[np.random.default_rng(0).permutation(115)]
    s = RandomImagesSampler(cap2img, batch_size=4, seed=3)
    seen = []
    for epoch in range(2):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 6
        caps = [c for b in batches for c in b]
        assert sorted(cap2img[caps].tolist()) == list(range(23))  # every image exactly once
        seen.append(caps)
    assert seen[0] != seen[1]
    s.set_epoch(0)
    assert [c for b in s for c in b] == seen[0]  # deterministic per epoch
