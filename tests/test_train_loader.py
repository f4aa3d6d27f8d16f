"""The training loader: Batch contents, images loaded once, workers, unreadable images, compatibility."""
from __future__ import annotations

import itertools
import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodalzoo.data.batch import Batch, TextBatch
from xmodalzoo.data.common import DataError
from xmodalzoo.data.loader import TrainCollate, build_train_loader, check_compatible, first_appearance
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY


class CharTokenizer:
    """Tiny stand-in tokenizer: character codes, padded to the longest caption (picklable)."""

    def __call__(self, texts: list[str], train: bool = False) -> TextBatch:
        assert train, "the training loader must tokenise with train=True"
        length = max(len(t) for t in texts)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids[i, : len(t)] = torch.tensor([ord(ch) for ch in t])
        return TextBatch(ids, ids != 0)


def to_small_tensor(image) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1)


def decode(ids: torch.Tensor) -> str:
    return "".join(chr(int(i)) for i in ids if i != 0)


def dataset(kind: str, split: str, **cfg):  # type: ignore[no-untyped-def]
    discover()
    return REGISTRY.get("dataset", kind).build(cfg, split=split)


class FixedBatches:
    """A sampler stand-in that yields the given caption-index batches."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def test_first_appearance_matches_a_loop() -> None:
    values = np.array([7, 3, 7, 9, 3, 1, 9])
    uniq, pos = first_appearance(values)
    seen: list[int] = []
    for v in values.tolist():
        if v not in seen:
            seen.append(v)
    assert uniq.tolist() == seen
    assert pos.tolist() == [seen.index(v) for v in values.tolist()]


def check_batch(batch: Batch, ds, caption_indices: list[int]) -> None:  # type: ignore[no-untyped-def]
    c2i = ds.caption_to_image
    assert batch.caption_index.tolist() == caption_indices
    expected_images = list(dict.fromkeys(c2i[caption_indices].tolist()))  # first appearance, once each
    assert batch.image_index.tolist() == expected_images
    assert batch.images.shape == (len(expected_images), 3, 8, 8)
    for row, image in enumerate(expected_images):
        assert torch.equal(batch.images[row], to_small_tensor(ds.load_image(image)))
    assert batch.image_index[batch.caption_image].tolist() == c2i[caption_indices].tolist()
    assert [decode(t) for t in batch.texts.ids] == [ds.captions[c] for c in caption_indices]
    pos = batch.positives()
    for i in range(len(expected_images)):
        for t in range(len(caption_indices)):
            assert bool(pos[i, t]) == (expected_images[i] == c2i[caption_indices[t]])


@pytest.mark.parametrize("num_workers", [0, 1])
def test_batches_share_images_loaded_once(shared_data: Path, num_workers: int) -> None:
    ds = dataset("jsonl", "val", root=str(shared_data / "flickr8k"))
    picked = np.random.default_rng(0).permutation(18).tolist()  # captions of 4 images, shuffled
    batches = [picked[i:i + 6] for i in range(0, 18, 6)]
    loader = build_train_loader(ds, FixedBatches(batches), image_transform=to_small_tensor,
                                tokenizer=CharTokenizer(), num_workers=num_workers)
    out = list(loader)
    assert len(out) == len(loader) == 3
    for batch, caps in zip(out, batches):
        assert isinstance(batch, Batch)
        check_batch(batch, ds, caps)
    assert loader.skipped_images == []


def test_batches_follow_the_registered_sampler(shared_data: Path) -> None:
    ds = dataset("jsonl", "val", root=str(shared_data / "flickr8k"))
    discover()
    s = REGISTRY.get("sampler", "image_captions").build({}, dataset=ds, batch_size=3, seed=0)
    s.set_epoch(1)
    loader = build_train_loader(ds, s, image_transform=to_small_tensor, tokenizer=CharTokenizer())
    assert len(loader) == len(s) == 67
    expected = list(itertools.islice(iter(s), 2))
    for batch, caps in zip(itertools.islice(iter(loader), 2), expected):
        check_batch(batch, ds, caps)
        assert batch.images.shape[0] == 3 and len(batch.texts) == 15


def test_collate_pickles_and_feature_datasets(tmp_path: Path) -> None:
    feats = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "train_ims.npy", feats)
    (tmp_path / "train_caps.txt").write_text("".join(f"caption {i}\n" for i in range(6)))
    ds = dataset("precomp", "train", root=str(tmp_path))
    collate = TrainCollate(ds, torch.from_numpy, CharTokenizer())
    collate = pickle.loads(pickle.dumps(collate))
    loader = build_train_loader(ds, FixedBatches([[5, 0, 4, 1]]), image_transform=torch.from_numpy,
                                tokenizer=CharTokenizer())
    (batch,) = list(loader)
    assert batch.images.shape == (2, 4, 5) and batch.image_index.tolist() == [2, 0]
    assert torch.equal(batch.images, torch.from_numpy(feats[[2, 0]]))
    assert batch.caption_image.tolist() == [0, 1, 0, 1]
    assert collate([3]).batch.image_index.tolist() == [1]


def corrupt_dataset(shared_data: Path, tmp_path: Path, on_error: str):  # type: ignore[no-untyped-def]
    rows = [json.loads(line) for line in (shared_data / "flickr8k" / "captions.jsonl").open()][:3]
    (tmp_path / "images").mkdir(exist_ok=True)
    for row in rows:
        shutil.copy(shared_data / "flickr8k" / row["image"], tmp_path / row["image"])
    bad = tmp_path / rows[1]["image"]
    bad.write_bytes(bad.read_bytes()[:500])  # truncated JPEG: exists, fails to decode
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))
    return dataset("jsonl", "train", root=str(tmp_path), on_error=on_error), bad


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_image_raise_names_the_file(shared_data: Path, tmp_path: Path, num_workers: int) -> None:
    ds, bad = corrupt_dataset(shared_data, tmp_path, "raise")
    loader = build_train_loader(ds, FixedBatches([[0, 6, 11]]), image_transform=to_small_tensor,
                                tokenizer=CharTokenizer(), num_workers=num_workers)
    with pytest.raises(DataError, match=f"cannot read image {bad}: OSError.*on_error: skip"):
        list(loader)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_image_skip_drops_it_from_the_batch(shared_data: Path, tmp_path: Path, num_workers: int,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    ds, bad = corrupt_dataset(shared_data, tmp_path, "skip")
    assert ds.num_images == 3  # the file exists, so it is only found out when loaded
    batches = [[6, 0, 12, 7, 1], [5, 9], [0]]  # captions 5-9 are the corrupt image's
    loader = build_train_loader(ds, FixedBatches(batches), image_transform=to_small_tensor,
                                tokenizer=CharTokenizer(), num_workers=num_workers, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="xmodalzoo.data"):
        out = list(loader)
    assert len(out) == 2  # the second batch had nothing left
    check_batch(out[0], ds, [0, 12, 1])
    check_batch(out[1], ds, [0])
    assert len(loader.skipped_images) == 2 and all(str(bad) in s for s in loader.skipped_images)
    assert str(bad) in caplog.text


def test_check_compatible(shared_data: Path, tmp_path: Path) -> None:
    ds = dataset("jsonl", "val", root=str(shared_data / "coco_mini"))
    check_compatible(ds, "pil")
    check_compatible(ds, None)
    with pytest.raises(DataError, match="gives images of kind 'pil', but the image encoder expects 'features'.*precomp"):
        check_compatible(ds, "features")
