"""Dataset loaders: the shared real data (flickr8k, coco_mini), Karpathy and precomp files written
here, root resolution from the environment, and the missing/corrupt image policy."""
from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodalzoo.data.common import DataError
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY


def build(kind: str, split: str, **cfg):  # type: ignore[no-untyped-def]
    discover()
    return REGISTRY.get("dataset", kind).build(cfg, split=split)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_contiguous(ds) -> None:  # type: ignore[no-untyped-def]
    c2i = ds.caption_to_image
    assert c2i.dtype == np.int64 and len(c2i) == ds.num_captions == len(ds.caption_ids)
    assert np.all(np.diff(c2i) >= 0), "captions of an image must be contiguous, images in order"
    assert set(c2i.tolist()) == set(range(ds.num_images))


# ----------------------------------------------------------------------------- jsonl
def test_jsonl_flickr8k_splits_follow_the_file(shared_data: Path) -> None:
    rows = read_rows(shared_data / "flickr8k" / "captions.jsonl")
    for split, n in [("train", 1600), ("val", 200), ("test", 200)]:
        ds = build("jsonl", split, root=str(shared_data / "flickr8k"))
        expected = [r for r in rows if r["split"] == split]
        assert ds.num_images == n == len(expected)
        assert ds.image_ids == [r["image_id"] for r in expected]
        assert ds.captions == [c for r in expected for c in r["captions"]]
        assert_contiguous(ds)
        assert ds.image_kind == "pil" and ds.split == split and ds.name == "flickr8k"
    img = ds.load_image(3)
    assert img.mode == "RGB" and img.size == (224, 224)
    # caption ids are stable and name their image
    assert ds.caption_ids[:2] == [f"{expected[0]['image_id']}#0", f"{expected[0]['image_id']}#1"]
    assert list(ds.captions_of(1)) == [5, 6, 7, 8, 9]


def test_jsonl_unknown_or_absent_split_is_a_clear_error(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"no images in split\(s\) \['test'\].*splits present: train, val"):
        build("jsonl", "test", root=str(shared_data / "coco_mini"))
    with pytest.raises(DataError, match="unknown split 'dev'"):
        build("jsonl", "dev", root=str(shared_data / "coco_mini"))
    ds = build("jsonl", "test", root=str(shared_data / "coco_mini"), splits={"test": "val"})
    assert ds.num_images == 79


def test_jsonl_bad_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "captions.jsonl").write_text('{"image": "a.jpg", "captions": ["x"], "split": "train"}\n{"image": 1\n')
    with pytest.raises(DataError, match=r"captions.jsonl:2: not valid JSON"):
        build("jsonl", "train", root=str(tmp_path))
    (tmp_path / "captions.jsonl").write_text('{"image": "a.jpg", "split": "train"}\n')
    with pytest.raises(DataError, match=r"captions.jsonl:1: missing key 'captions'"):
        build("jsonl", "train", root=str(tmp_path))


# ----------------------------------------------------------------------------- coco
def test_coco_annotations_match_the_jsonl_copy(shared_data: Path) -> None:
    root = shared_data / "coco_mini"
    for split in ("train", "val"):
        ds = build("coco", split, root=str(root))
        ann = json.loads((root / "annotations" / f"captions_{split}2017.json").read_text())
        assert ds.image_ids == [im["id"] for im in ann["images"]]  # image order = file order
        assert_contiguous(ds)
        ref = {r["image_id"]: r for r in read_rows(root / "captions.jsonl") if r["split"] == split}
        assert set(ds.image_ids) == set(ref)
        for i, image_id in enumerate(ds.image_ids):
            caps = ds.captions_of(i)
            assert [ds.caption_ids[c] for c in caps] == ref[image_id]["caption_ids"]
            assert [ds.captions[c] for c in caps] == [c.strip() for c in ref[image_id]["captions"]]
        assert ds.paths[0].parent.name == f"{split}2017"
    assert ds.load_image(0).mode == "RGB"
    # test defaults to val2017: the COCO 2017 test split has no public captions
    assert build("coco", "test", root=str(root)).image_ids == ds.image_ids


def test_coco_captions_per_image_and_bad_file(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "coco_mini"
    ds = build("coco", "val", root=str(root), captions_per_image=2)
    assert ds.num_captions == 2 * ds.num_images
    (tmp_path / "ann.json").write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(DataError, match="ann.json: not a COCO caption file"):
        build("coco", "val", root=str(tmp_path), splits={"val": {"annotations": "ann.json", "images": "."}})
    with pytest.raises(DataError, match=r"missing\.json does not exist; check data.splits.val.annotations"):
        build("coco", "val", root=str(tmp_path), splits={"val": {"annotations": "missing.json", "images": "."}})


# ----------------------------------------------------------------------------- karpathy
def write_karpathy(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    """A tiny dataset_coco.json over coco_mini images: 2 train, 1 restval, 1 val, 2 test."""
    rows = read_rows(shared_data / "coco_mini" / "captions.jsonl")[:6]
    splits = ["test", "train", "restval", "val", "train", "test"]
    images = []
    for k, (row, split) in enumerate(zip(rows, splits)):
        folder, filename = row["image"].split("/")[1:]
        images.append({
            "filepath": folder, "filename": filename, "split": split, "imgid": k, "cocoid": row["image_id"],
            "sentids": [100 * k + j for j in range(5)],
            "sentences": [{"raw": c, "sentid": 100 * k + j, "imgid": k} for j, c in enumerate(row["captions"])],
        })
    root = tmp_path / "karpathy"
    root.mkdir()
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    (root / "images").symlink_to(shared_data / "coco_mini" / "images")
    return root, images


def test_karpathy_train_uses_train_and_restval_in_file_order(shared_data: Path, tmp_path: Path) -> None:
    root, images = write_karpathy(shared_data, tmp_path)
    ds = build("karpathy", "train", root=str(root), image_dir="images")
    expected = [im for im in images if im["split"] in ("train", "restval")]
    assert ds.image_ids == [im["cocoid"] for im in expected]
    assert ds.caption_ids == [s["sentid"] for im in expected for s in im["sentences"]]
    assert ds.captions == [s["raw"] for im in expected for s in im["sentences"]]
    assert_contiguous(ds)
    assert ds.load_image(2).mode == "RGB"
    test = build("karpathy", "test", root=str(root), image_dir="images", captions_per_image=3)
    assert test.image_ids == [images[0]["cocoid"], images[5]["cocoid"]]
    assert test.caption_to_image.tolist() == [0, 0, 0, 1, 1, 1]
    only_train = build("karpathy", "train", root=str(root), image_dir="images", splits={"train": "train"})
    assert only_train.num_images == 2


def test_karpathy_without_filepath_and_root_from_flavour_env(shared_data: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [r for r in read_rows(shared_data / "flickr8k" / "captions.jsonl") if r["split"] == "val"][:2]
    images = [{"filename": r["image"].split("/")[1], "split": "val", "imgid": k,
               "sentences": [{"raw": c} for c in r["captions"]]} for k, r in enumerate(rows)]
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    monkeypatch.setenv("XMODALZOO_FLICKR8K_ROOT", str(tmp_path))
    ds = build("karpathy", "val", flavour="flickr8k", image_dir=str(shared_data / "flickr8k" / "images"))
    assert ds.image_ids == [0, 1] and ds.num_captions == 10 and ds.caption_ids[6] == "1#1"
    assert ds.name == "flickr8k" and ds.load_image(1).size == (224, 224)


# ----------------------------------------------------------------------------- roots
def test_root_from_data_root_env_and_expansion(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMODALZOO_COCO_ROOT", raising=False)
    monkeypatch.setenv("XMODALZOO_DATA_ROOT", str(shared_data))
    assert build("jsonl", "val", name="flickr8k").num_images == 200
    assert build("coco", "val", name="coco_mini").num_images == 79
    monkeypatch.setenv("XMODALZOO_COCO_ROOT", str(shared_data / "coco_mini"))
    assert build("coco", "val").num_images == 79  # the dataset's own variable wins
    monkeypatch.setenv("MY_DATA", str(shared_data))
    assert build("jsonl", "val", root="$MY_DATA/flickr8k").num_images == 200
    monkeypatch.setenv("HOME", str(shared_data))
    assert build("jsonl", "val", root="~/flickr8k").num_images == 200


def test_missing_root_errors_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XMODALZOO_DATA_ROOT", "XMODALZOO_COCO_ROOT", "XMODALZOO_PRECOMP_ROOT", "NOT_SET_VAR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DataError, match="set data.root in the recipe, or the environment variable XMODALZOO_COCO_ROOT"):
        build("coco", "val")
    with pytest.raises(DataError, match="together with data.name"):
        build("jsonl", "val")
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} of the 'jsonl' dataset does not exist; fix data.root"):
        build("jsonl", "val", root=str(tmp_path / "nope"))
    monkeypatch.setenv("XMODALZOO_PRECOMP_ROOT", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="gone.*fix the environment variable XMODALZOO_PRECOMP_ROOT"):
        build("precomp", "val")
    with pytest.raises(DataError, match=r"\$NOT_SET_VAR, which is not set"):
        build("jsonl", "val", root="$NOT_SET_VAR/x")
    with pytest.raises(DataError, match="captions file .*captions.jsonl does not exist"):
        build("jsonl", "val", root=str(tmp_path))


# ----------------------------------------------------------------------------- precomp
def write_precomp(root: Path, prefix: str, n_rows: int, n_caps: int, seed: int = 0) -> np.ndarray:
    feats = np.random.default_rng(seed).standard_normal((n_rows, 3, 4)).astype(np.float16)
    np.save(root / f"{prefix}_ims.npy", feats)
    (root / f"{prefix}_caps.txt").write_text("".join(f"{prefix} caption {c}\n" for c in range(n_caps)))
    return feats


def test_precomp_features_and_caption_mapping(tmp_path: Path) -> None:
    feats = write_precomp(tmp_path, "dev", n_rows=4, n_caps=20)
    ds = build("precomp", "val", root=str(tmp_path))
    assert ds.image_kind == "features" and ds.num_images == 4 and ds.num_captions == 20
    assert ds.caption_to_image.tolist() == [c // 5 for c in range(20)]
    assert ds.captions[7] == "dev caption 7" and ds.caption_ids[7] == "dev/7" and ds.image_ids[3] == "dev/3"
    x = ds.load_image(2)
    assert x.dtype == np.float32 and x.shape == (3, 4)
    np.testing.assert_array_equal(x, feats[2].astype(np.float32))
    assert isinstance(ds.parts[0].array, np.memmap)
    clone = pickle.loads(pickle.dumps(ds))  # workers get the path, not the array
    assert clone.parts[0]._array is None
    np.testing.assert_array_equal(clone.load_image(3), feats[3].astype(np.float32))


def test_precomp_repeated_rows_and_concatenated_splits(tmp_path: Path) -> None:
    feats = write_precomp(tmp_path, "test", n_rows=10, n_caps=10)  # each image stored once per caption
    ds = build("precomp", "test", root=str(tmp_path), rows_per_image=5)
    assert ds.num_images == 2 and ds.caption_to_image.tolist() == [0] * 5 + [1] * 5
    np.testing.assert_array_equal(ds.load_image(1), feats[5].astype(np.float32))
    a = write_precomp(tmp_path, "train", n_rows=2, n_caps=10, seed=1)
    b = write_precomp(tmp_path, "restval", n_rows=3, n_caps=6, seed=2)  # 2 captions per image here
    ds = build("precomp", "train", root=str(tmp_path), splits={"train": ["train", "restval"]})
    assert ds.caption_to_image.tolist() == [0] * 5 + [1] * 5 + [2, 2, 3, 3, 4, 4]
    np.testing.assert_array_equal(ds.load_image(1), a[1].astype(np.float32))
    np.testing.assert_array_equal(ds.load_image(4), b[2].astype(np.float32))
    assert ds.image_ids[2] == "restval/0"


def test_precomp_ratio_must_be_whole(tmp_path: Path) -> None:
    write_precomp(tmp_path, "dev", n_rows=4, n_caps=18)
    with pytest.raises(DataError, match="18 captions but .*dev_ims.npy holds 4 images.*whole number"):
        build("precomp", "val", root=str(tmp_path))
    with pytest.raises(DataError, match="test_ims.npy does not exist"):
        build("precomp", "test", root=str(tmp_path))


# ----------------------------------------------------------------------------- error policy
def folder_with_bad_images(shared_data: Path, tmp_path: Path) -> Path:
    """4 listed images: two good, one corrupt (truncated JPEG), one missing."""
    rows = read_rows(shared_data / "flickr8k" / "captions.jsonl")[:4]
    (tmp_path / "images").mkdir()
    for row in rows[:3]:
        shutil.copy(shared_data / "flickr8k" / row["image"], tmp_path / row["image"])
    data = (tmp_path / rows[1]["image"]).read_bytes()
    (tmp_path / rows[1]["image"]).write_bytes(data[: len(data) // 3])
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))
    return tmp_path


def test_missing_image_raise_names_path_and_skip_drops_it(shared_data: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    root = folder_with_bad_images(shared_data, tmp_path)
    rows = read_rows(root / "captions.jsonl")
    missing = root / rows[3]["image"]
    with pytest.raises(DataError, match=f"1 image file.*{missing}.*on_error: skip"):
        build("jsonl", "train", root=str(root))
    with caplog.at_level(logging.WARNING, logger="xmodalzoo.data"):
        ds = build("jsonl", "train", root=str(root), on_error="skip")
    assert ds.missing_images == [str(missing)]
    assert ds.image_ids == [r["image_id"] for r in rows[:3]] and ds.num_captions == 15
    assert "skipping 1 missing image file" in caplog.text and str(missing) in caplog.text
    corrupt = root / rows[1]["image"]
    with pytest.raises(DataError, match=f"cannot read image {corrupt}: OSError: image file is truncated"):
        ds.load_image(1)
    assert ds.load_image(0).size == (224, 224)


def test_load_image_of_non_image_file(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    Image.new("RGB", (4, 4)).save(tmp_path / "y.png")
    (tmp_path / "captions.jsonl").write_text(
        json.dumps({"image": "x.jpg", "captions": ["a"], "split": "val"}) + "\n"
        + json.dumps({"image": "y.png", "captions": ["b"], "split": "val"}) + "\n")
    ds = build("jsonl", "val", root=str(tmp_path))
    with pytest.raises(DataError, match=f"cannot read image {tmp_path / 'x.jpg'}: UnidentifiedImageError"):
        ds.load_image(0)
    assert ds.load_image(1).mode == "RGB" and ds.image_ids == ["x.jpg", "y.png"]
