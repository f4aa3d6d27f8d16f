"""The CUB loader on a small CUB-shaped tree the test writes: class splits, class-level positives, the
class-balanced sampler, and missing captions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodalzoo.data.common import DataError
from xmodalzoo.api import build_component as build

CLASSES = {"train": ["001.Albatross", "002.Auklet", "003.Blackbird"], "test": ["004.Bobolink", "005.Bunting"]}


def make_cub(root: Path, images_per_class: int = 2, captions: int = 10) -> Path:
    for split, names in CLASSES.items():
        (root / f"{split}classes.txt").write_text("\n".join(names) + "\n")
        for c, name in enumerate(names):
            (root / "CUB_200_2011" / "images" / name).mkdir(parents=True)
            (root / "text_c10" / name).mkdir(parents=True)
            for i in range(images_per_class):
                stem = f"{name.split('.')[1]}_{i:04d}"
                Image.new("RGB", (16, 16), (40 * c, 20 * i, 0)).save(root / "CUB_200_2011" / "images" / name / f"{stem}.jpg")
                lines = [f"a {name.split('.')[1].lower()} number {i} caption {j}" for j in range(captions)]
                (root / "text_c10" / name / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def cub(root: Path, split: str, **extra):
    cfg = {"type": "cub", "root": str(root),
           "class_splits": {"train": "trainclasses.txt", "test": "testclasses.txt"}, **extra}
    return build("dataset", cfg, split=split)


def test_class_splits_captions_and_class_level_positives(tmp_path):
    root = make_cub(tmp_path)
    train, test = cub(root, "train"), cub(root, "test")
    assert (train.num_images, train.num_captions) == (6, 60) and (test.num_images, test.num_captions) == (4, 40)
    assert train.class_names == CLASSES["train"]
    assert train.image_ids[0] == "001.Albatross/Albatross_0000.jpg"
    assert train.captions[0] == "a albatross number 0 caption 0"
    # caption c matches every image of its class, and only those
    expected = torch.tensor([[train.image_classes[train.caption_to_image[c]] == train.image_classes[i]
                              for i in range(train.num_images)] for c in range(train.num_captions)])
    assert torch.equal(train.positives, expected) and int(train.positives.sum()) == 60 * 2
    assert np.array_equal(train.caption_classes, np.repeat([0, 1, 2], 20))
    assert train.load_image(0).size == (16, 16)


def test_class_balanced_sampler_gets_one_caption_per_class(tmp_path):
    train = cub(make_cub(tmp_path), "train")
    sampler = build("sampler", {"type": "class_balanced"}, dataset=train, batch_size=3, seed=0)
    batches = list(sampler)
    assert len(batches) == 20
    for b in batches:
        assert sorted(train.caption_classes[np.asarray(b)].tolist()) == [0, 1, 2]


def test_fewer_captions_and_dropped_images_keep_classes_consistent(tmp_path):
    root = make_cub(tmp_path)
    train = cub(root, "train", captions_per_image=3)
    assert train.num_captions == 18
    train.drop_images([1, 2])  # one image of class 0, one of class 1
    assert train.image_classes.tolist() == [0, 1, 2, 2]
    assert train.caption_classes.tolist() == [c for c in [0, 1, 2, 2] for _ in range(3)]
    assert train.positives.shape == (12, 4) and int(train.positives.sum()) == 3 + 3 + 6 + 6


def test_missing_captions_raise_or_skip(tmp_path):
    root = make_cub(tmp_path)
    (root / "text_c10" / "002.Auklet" / "Auklet_0001.txt").unlink()
    with pytest.raises(DataError, match=r"no caption file .*Auklet_0001.txt.*on_error: skip"):
        cub(root, "train")
    train = cub(root, "train", on_error="skip")
    assert train.num_images == 5 and "002.Auklet/Auklet_0001.jpg" not in train.image_ids


def test_bad_layout_errors_name_the_setting(tmp_path):
    root = make_cub(tmp_path)
    with pytest.raises(DataError, match="split 'val' is not configured"):
        cub(root, "val")
    with pytest.raises(DataError, match="data.text_dir"):
        cub(root, "train", text_dir="nope")
    (root / "trainclasses.txt").write_text("001.Albatross\n009.Missing\n")
    with pytest.raises(DataError, match="009.Missing"):
        cub(root, "train")
