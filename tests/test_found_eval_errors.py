"""Unreadable images during evaluation: ``on_error: raise`` is one line naming the file (also from a
worker), ``skip`` drops the image and its captions consistently; datasets drop images in place."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xmodalzoo.data.base import RetrievalDataset
from xmodalzoo.data.batch import TextBatch
from xmodalzoo.data.common import DataError
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.eval import EvalConfig, evaluate
from xmodalzoo.api import build_component as build

N_IMAGES, BAD = 5, 2


class ColourMethod(nn.Module):
    """Image k is a solid colour (20·k, 0, 0) and embeds as one-hot k; caption "image k …" as one-hot k."""

    def __init__(self) -> None:
        super().__init__()
        from xmodalzoo.similarity import Cosine

        self.similarity = Cosine()

    def image_transform(self, train: bool = False):  # type: ignore[no-untyped-def]
        return lambda img: torch.tensor(float(np.asarray(img)[0, 0, 0]) / 20.0)

    def tokenize(self, texts: list[str], train: bool = False) -> TextBatch:
        ids = torch.tensor([[int(t.split()[1])] for t in texts])
        return TextBatch(ids, torch.ones_like(ids, dtype=torch.bool))

    def encode_image(self, x: torch.Tensor) -> PointEmbedding:
        return PointEmbedding(torch.eye(8)[x.round().long()])

    def encode_text(self, texts: TextBatch) -> PointEmbedding:
        return PointEmbedding(torch.eye(8)[texts.ids[:, 0]])


def corrupt_jsonl(root: Path, on_error: str) -> tuple[RetrievalDataset, Path]:
    """A JSONL dataset of ``N_IMAGES`` solid-colour PNGs (2 captions each); image ``BAD`` is corrupt."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(N_IMAGES):
        path = root / "images" / f"{k}.png"
        Image.new("RGB", (8, 8), (20 * k, 0, 0)).save(path)
        rows.append({"image": f"images/{k}.png", "captions": [f"image {k} first", f"image {k} second"],
                     "split": "test"})
    bad = root / "images" / f"{BAD}.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG: exists, fails to decode
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build("dataset", {"type": "jsonl", "root": str(root), "on_error": on_error}, split="test"), bad


@pytest.mark.parametrize("num_workers", [0, 1])
def test_eval_unreadable_image_raise_is_one_line_naming_the_file(tmp_path: Path, num_workers: int) -> None:
    ds, bad = corrupt_jsonl(tmp_path, "raise")
    cfg = EvalConfig(device="cpu", batch_size=2, num_workers=num_workers)
    with pytest.raises(DataError) as err:
        evaluate(ColourMethod(), ds, cfg, progress=False)
    msg = str(err.value)
    assert f"cannot read image {bad}" in msg and "on_error: skip" in msg
    assert "\n" not in msg and "worker" not in msg


@pytest.mark.parametrize("num_workers", [0, 1])
def test_eval_unreadable_image_skip_drops_it_and_its_captions(tmp_path: Path, num_workers: int,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    ds, bad = corrupt_jsonl(tmp_path, "skip")
    cfg = EvalConfig(device="cpu", batch_size=2, num_workers=num_workers)
    with caplog.at_level(logging.WARNING, logger="xmodalzoo.data"):
        results = evaluate(ColourMethod(), ds, cfg, progress=False)
    assert results["meta"]["num_images"] == N_IMAGES - 1 and results["meta"]["num_captions"] == 2 * (N_IMAGES - 1)
    # every remaining caption still points at its own image: a perfect model stays perfect
    assert results["full"]["i2t_r1"] == 100.0 and results["full"]["t2i_r1"] == 100.0
    assert ds.image_ids == [f"images/{k}.png" for k in range(N_IMAGES) if k != BAD]
    assert all(f"image {BAD} " not in c for c in ds.captions)
    assert [int(c.split()[1]) for c in ds.captions] == [int(Path(str(ds.image_ids[i])).stem) for i in ds.caption_to_image]
    assert len(ds.skipped_images) == 1 and str(bad) in ds.skipped_images[0]
    assert str(bad) in caplog.text and "without 1 unreadable image(s) and their 2 caption(s)" in caplog.text
    # a second evaluation (the next validation) sees the reduced split and drops nothing more
    again = evaluate(ColourMethod(), ds, cfg, progress=False)
    assert again["full"] == results["full"] and len(ds.skipped_images) == 1


class TableDataset(RetrievalDataset):
    """In-memory features with exhaustive positives, labels and caption classes."""

    image_kind = "features"

    def __init__(self) -> None:
        self.name, self.split = "table", "test"
        self.rows = np.arange(4, dtype=np.float32)
        self.image_ids = ["a", "b", "c", "d"]
        self.caption_to_image = np.array([0, 0, 1, 2, 2, 3])
        self.captions = [f"cap{c}" for c in range(6)]
        self.caption_ids = list(range(6))
        self.positives = torch.rand(6, 4) > 0.5
        self.image_labels = torch.eye(4)
        self.caption_labels = torch.eye(4)[torch.from_numpy(self.caption_to_image)]
        self.caption_classes = np.array([5, 5, 6, 7, 7, 8])

    def load_image(self, index: int) -> np.ndarray:
        return self.rows[index : index + 1]

    def _select_images(self, keep: np.ndarray) -> None:
        self.rows = self.rows[keep]


def test_drop_images_keeps_every_attribute_consistent() -> None:
    ds = TableDataset()
    positives = ds.positives.clone()
    keep = ds.drop_images([1, 3])
    assert keep.tolist() == [0, 2]
    assert ds.image_ids == ["a", "c"] and ds.captions == ["cap0", "cap1", "cap3", "cap4"]
    assert ds.caption_ids == [0, 1, 3, 4] and ds.caption_to_image.tolist() == [0, 0, 1, 1]
    assert torch.equal(ds.positives, positives[[0, 1, 3, 4]][:, [0, 2]])
    assert torch.equal(ds.image_labels, torch.eye(4)[[0, 2]])
    assert torch.equal(ds.caption_labels, torch.eye(4)[[0, 0, 2, 2]])
    assert ds.caption_classes.tolist() == [5, 5, 7, 7] and ds.load_image(1).tolist() == [2.0]
    with pytest.raises(DataError, match="no readable image is left"):
        ds.drop_images([0, 1])


def test_precomp_drop_images_maps_rows(tmp_path: Path) -> None:
    feats = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    np.save(tmp_path / "test_ims.npy", feats)
    (tmp_path / "test_caps.txt").write_text("".join(f"caption {i}\n" for i in range(8)))
    ds = build("dataset", {"type": "precomp", "root": str(tmp_path), "on_error": "skip"}, split="test")
    assert ds.on_error == "skip"
    ds.drop_images([1])
    ds.drop_images([0])  # twice: the row map composes
    assert ds.num_images == 2 and ds.caption_to_image.tolist() == [0, 0, 1, 1]
    assert ds.captions == [f"caption {i}" for i in (4, 5, 6, 7)]
    assert np.array_equal(ds.load_image(0), feats[2]) and np.array_equal(ds.load_image(1), feats[3])


def test_shapes_cannot_drop_images_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path))
    ds = build("dataset", {"type": "shapes", "image_size": 24, "test_size": 4, "captions_per_image": 1}, split="test")
    with pytest.raises(DataError, match="cannot drop unreadable images"):
        ds.drop_images([0])
    assert ds.num_images == 4
