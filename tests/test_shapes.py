"""The built-in shapes benchmark: generation, exact ground truth, labels, cache and preview."""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from PIL import Image

from xmodalzoo.data import shapes as shapes_mod
from xmodalzoo.data.preview import preview_grid
from xmodalzoo.data.shapes import ShapesConfig, ShapesDataset, build_shapes, generate_split
from xmodalzoo.data.shapes_captions import (
    CELL_PHRASES, COLUMN_PHRASES, COUNT_TEMPLATE, NUMBER_WORDS, ROW_PHRASES, TEMPLATES,
)
from xmodalzoo.data.shapes_match import PositiveMatcher
from xmodalzoo.data.shapes_scenes import COLOURS, PALETTE, SHAPES, SIZES

SMALL = dict(train_size=40, val_size=30, test_size=40)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def test_split() -> ShapesDataset:
    return build_shapes(ShapesConfig(**SMALL, cache=False), split="test")


# ----------------------------------------------------------------------------- brute-force references


def described_objects(ds: ShapesDataset, c: int) -> list[tuple[int, ...]]:
    return [tuple(ds.caption_attributes[c, j]) for j in range(int(ds.caption_num_objects[c]))]


def scene_objects(ds: ShapesDataset, i: int) -> list[tuple[int, ...]]:
    return [tuple(o) for o in ds.objects[i] if o[0] >= 0]


def fits(constraint: tuple[int, ...], obj: tuple[int, ...]) -> bool:
    return all(want < 0 or want == have for want, have in zip(constraint, obj))


def brute_force_match(described: list[tuple[int, ...]], objects: list[tuple[int, ...]]) -> bool:
    return any(
        all(fits(d, objects[k]) for d, k in zip(described, assignment))
        for assignment in itertools.permutations(range(len(objects)), len(described))
    )


def parse_caption(text: str) -> list[tuple[int, ...]]:
    """Read the attributes each object phrase names back out of a caption's text."""
    count = re.match(r"^(\w+) shapes: (.*)$", text)
    if count:
        assert COUNT_TEMPLATE.format(count.group(1), count.group(2)) == text
        inner = count.group(2)
        assert NUMBER_WORDS.index(count.group(1)) == len(inner.replace(" and ", ", ").split(", ")), text
    else:
        inner = text
        for template in sorted(TEMPLATES, key=len, reverse=True):
            prefix, suffix = template.split("{}")
            if text.startswith(prefix) and text.endswith(suffix) and (prefix or suffix):
                inner = text[len(prefix): len(text) - len(suffix)]
                break
    positions = {p: (-1, c) for c, p in enumerate(COLUMN_PHRASES)}
    positions.update({p: (r, -1) for r, p in enumerate(ROW_PHRASES)})
    positions.update({p: (r, c) for r, row in enumerate(CELL_PHRASES) for c, p in enumerate(row)})
    out = []
    for phrase in inner.replace(" and ", ", ").split(", "):
        row = col = -1
        for p in sorted(positions, key=len, reverse=True):
            if phrase.endswith(" " + p):
                row, col = positions[p]
                phrase = phrase[: -len(p) - 1]
                break
        words = phrase.split()
        assert words[0] in {"a", "an", "another", "something"}, phrase

        def code(vocab: tuple[str, ...]) -> int:
            found = [vocab.index(w) for w in words if w in vocab]
            assert len(found) <= 1, phrase
            return found[0] if found else -1

        out.append((code(SHAPES), code(COLOURS), code(SIZES), row, col))
    return out


# ----------------------------------------------------------------------------- generation


def test_same_seed_same_data_and_other_seeds_or_splits_differ():
    a = generate_split(ShapesConfig(**SMALL, seed=3), "val")
    b = generate_split(ShapesConfig(**SMALL, seed=3), "val")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other_seed = generate_split(ShapesConfig(**SMALL, seed=4), "val")
    assert not np.array_equal(a["objects"], other_seed["objects"])
    assert not np.array_equal(a["images"], other_seed["images"])
    assert list(a["captions"]) != list(other_seed["captions"])
    other_split = generate_split(ShapesConfig(**{**SMALL, "test_size": 30}, seed=3), "test")
    assert not np.array_equal(a["objects"], other_split["objects"])


def test_dataset_interface(test_split):
    ds = test_split
    assert (ds.name, ds.split, ds.image_kind) == ("shapes", "test", "pil")
    assert ds.num_images == 40 and ds.num_captions == 200
    assert list(ds.image_ids) == list(range(40)) and list(ds.caption_ids) == list(range(200))
    assert ds.caption_to_image.dtype == np.int64
    np.testing.assert_array_equal(ds.caption_to_image, np.arange(200) // 5)
    img = ds.load_image(7)
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(img), ds.images[7])
    with pytest.raises(IndexError, match="out of range"):
        ds.load_image(40)
    assert all(isinstance(c, str) and c for c in ds.captions)


def test_scene_layout_one_object_per_cell():
    ds = build_shapes(ShapesConfig(train_size=300, cache=False), split="train")
    assert ds.num_objects.min() == 1 and ds.num_objects.max() == 4
    for i in range(ds.num_images):
        objs = scene_objects(ds, i)
        assert len(objs) == ds.num_objects[i]
        cells = [(o[3], o[4]) for o in objs]
        assert len(set(cells)) == len(cells), f"image {i} puts two objects in one cell"
        assert all(0 <= o[0] < len(SHAPES) and 0 <= o[1] < len(COLOURS) and o[2] in (0, 1) for o in objs)


def test_pixels_show_each_object_in_its_own_cell(test_split):
    ds = test_split
    cell = 64 / 3
    palette = PALETTE / np.linalg.norm(PALETTE, axis=1, keepdims=True)
    for i in range(ds.num_images):
        img = ds.images[i].astype(np.float32)
        by_cell = {(o[3], o[4]): o for o in scene_objects(ds, i)}
        for r in range(3):
            for c in range(3):
                patch = img[int(r * cell): int((r + 1) * cell), int(c * cell): int((c + 1) * cell)].reshape(-1, 3)
                saturated = patch[patch.max(1) - patch.min(1) > 80]
                if (r, c) not in by_cell:
                    assert len(saturated) == 0, f"image {i}: colour in empty cell {(r, c)}"
                    continue
                obj = by_cell[(r, c)]
                hue = saturated / np.linalg.norm(saturated, axis=1, keepdims=True)
                nearest = np.argmax(hue @ palette.T, axis=1)
                assert len(saturated) >= 15, f"image {i}: object in cell {(r, c)} barely drawn"
                assert np.mean(nearest == obj[1]) > 0.9, f"image {i}: cell {(r, c)} has the wrong colour"


def test_large_objects_cover_more_pixels_than_small():
    ds = build_shapes(ShapesConfig(train_size=200, cache=False), split="train")
    cell = 64 / 3
    area = {0: [], 1: []}
    for i in range(ds.num_images):
        img = ds.images[i].astype(np.int32)
        for o in scene_objects(ds, i):
            r, c = o[3], o[4]
            patch = img[int(r * cell): int((r + 1) * cell), int(c * cell): int((c + 1) * cell)]
            area[o[2]].append(int(((patch.max(2) - patch.min(2)) > 80).sum()))
    assert min(area[1]) > np.median(area[0])


# ----------------------------------------------------------------------------- captions and ground truth


def test_caption_structure_refers_to_its_image(test_split):
    ds = test_split
    for c in range(ds.num_captions):
        i = ds.caption_to_image[c]
        m = int(ds.caption_num_objects[c])
        assert 1 <= m <= ds.num_objects[i]
        slots = ds.caption_object_index[c, :m]
        assert len(set(slots.tolist())) == m and (ds.caption_object_index[c, m:] == -1).all()
        for j, k in enumerate(slots):
            named = ds.caption_attributes[c, j]
            assert (named >= 0).any(), f"caption {c} names an object by no attribute"
            assert ((named < 0) | (named == ds.objects[i, k])).all()
        assert (ds.caption_attributes[c, m:] == -1).all()
    assert ds.caption_num_attributes.min() >= 1


def test_caption_text_says_what_the_structure_says(test_split):
    ds = test_split
    for c, text in enumerate(ds.captions):
        assert parse_caption(text) == described_objects(ds, c), text


def test_positives_equal_brute_force_bipartite_matching(test_split):
    ds = test_split
    expected = torch.tensor([
        [brute_force_match(described_objects(ds, c), scene_objects(ds, i)) for i in range(ds.num_images)]
        for c in range(ds.num_captions)
    ])
    assert ds.positives.dtype == torch.bool and ds.positives.shape == (200, 40)
    assert torch.equal(ds.positives, expected)
    # a few captions must fit several images, or the benchmark is not ambiguous
    assert (expected.sum(1) > 1).float().mean() > 0.3


def test_every_caption_matches_its_own_image():
    ds = build_shapes(ShapesConfig(train_size=400, cache=False), split="train")
    pos = ds.positives
    assert pos[torch.arange(ds.num_captions), torch.from_numpy(ds.caption_to_image)].all()


def test_matching_needs_distinct_objects_and_is_not_greedy():
    def obj(shape, colour, size=0, row=0, col=0):
        return (SHAPES.index(shape), COLOURS.index(colour), size, row, col)

    pad = (-1,) * 5
    images = np.array([
        [obj("circle", "red"), obj("circle", "blue", col=1), pad, pad],
        [obj("circle", "red"), pad, pad, pad],
        [obj("square", "red"), obj("circle", "red", col=2), pad, pad],
    ], dtype=np.int8)
    any_circle = (SHAPES.index("circle"), -1, -1, -1, -1)
    red_circle = (SHAPES.index("circle"), COLOURS.index("red"), -1, -1, -1)
    red = (-1, COLOURS.index("red"), -1, -1, -1)
    captions = np.array([
        [any_circle, red_circle, pad, pad],  # a circle and a red circle
        [red, red, pad, pad],  # two red things
        [red_circle, pad, pad, pad],
    ], dtype=np.int8)
    got = PositiveMatcher(images, captions, np.array([2, 2, 1])).matrix()
    # hand-derived: image 0 has red+blue circles, image 1 one red circle, image 2 red square+circle
    expected = torch.tensor([[True, False, False], [False, False, True], [True, True, True]])
    assert torch.equal(got, expected)


def test_positive_block_matches_full_matrix(test_split):
    ds = test_split
    caps, imgs = np.array([3, 0, 150, 77]), np.array([39, 2, 2, 10])
    assert torch.equal(ds.positive_block(caps, imgs), ds.positives[caps][:, imgs])
    assert torch.equal(ds.positive_block(slice(10, 20), slice(5, 9)), ds.positives[10:20, 5:9])


def test_short_captions_are_more_ambiguous_than_long_ones():
    ds = build_shapes(ShapesConfig(test_size=300, cache=False), split="test")
    matches = ds.positives.sum(1).numpy()
    short = matches[ds.caption_num_attributes <= 2]
    long = matches[ds.caption_num_attributes >= 4]
    assert len(short) > 50 and len(long) > 50
    assert short.mean() > 3 * long.mean()


def test_labels_are_the_scene_shape_colour_pairs(test_split):
    ds = test_split
    assert ds.image_labels.dtype == torch.bool and ds.image_labels.shape == (40, len(SHAPES) * len(COLOURS))
    for i in range(ds.num_images):
        expected = torch.zeros(len(SHAPES) * len(COLOURS), dtype=torch.bool)
        for o in scene_objects(ds, i):
            expected[o[0] * len(COLOURS) + o[1]] = True
        assert torch.equal(ds.image_labels[i], expected)
    assert torch.equal(ds.caption_labels, ds.image_labels[torch.from_numpy(ds.caption_to_image)])


# ----------------------------------------------------------------------------- config, registry, cache


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ValueError, match="train, val, test"):
        build_shapes(ShapesConfig(**SMALL), split="dev")


def test_config_rejects_more_objects_than_the_matcher_supports():
    with pytest.raises(ValueError, match="max_objects"):
        ShapesConfig(max_objects=5)


def test_registered_as_dataset():
    from xmodalzoo.plugins import discover
    from xmodalzoo.registry import REGISTRY

    discover()
    ds = REGISTRY.get("dataset", "shapes").build({"test_size": 12, "cache": False}, split="test")
    assert isinstance(ds, ShapesDataset) and ds.num_images == 12


def test_cache_is_reused_not_regenerated(cache_dir, monkeypatch):
    cfg = ShapesConfig(**SMALL)
    first = build_shapes(cfg, split="val")
    pos = first.positives
    files = sorted(cache_dir.rglob("*"))
    data_files = [f for f in files if f.suffix == ".npz"]
    assert len(data_files) == 1 and any(f.name.endswith("-positives.npy") for f in files)
    stamp = {f: f.stat().st_mtime_ns for f in files}

    def no_generation(*_, **__):
        raise AssertionError("regenerated although the cache holds this split")

    monkeypatch.setattr(shapes_mod, "generate_split", no_generation)
    monkeypatch.setattr(PositiveMatcher, "matrix", no_generation)
    second = build_shapes(cfg, split="val")
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.objects, first.objects)
    np.testing.assert_array_equal(second.caption_attributes, first.caption_attributes)
    assert second.captions == first.captions
    assert torch.equal(second.positives, pos)
    assert {f: f.stat().st_mtime_ns for f in sorted(cache_dir.rglob("*"))} == stamp
    # a different generation parameter is a different cache entry
    with pytest.raises(AssertionError, match="regenerated"):
        build_shapes(ShapesConfig(**SMALL, seed=1), split="val")


def test_no_cache_writes_nothing(cache_dir):
    build_shapes(ShapesConfig(**SMALL, cache=False), split="val").positives
    assert not cache_dir.exists() or not any(cache_dir.rglob("*"))


# ----------------------------------------------------------------------------- preview


def test_preview_writes_png_grid(test_split, tmp_path):
    out = preview_grid(test_split, tmp_path / "p" / "grid.png", n=6, columns=3, seed=1)
    with Image.open(out) as img:
        assert img.format == "PNG"
        tile = 64 * 3 + 12  # upscaled image plus padding
        assert img.width == 3 * tile
        assert img.height > 2 * tile
        # the upscaled images are pasted in: the first tile's top-left holds an image pixel
        assert img.getpixel((6, 6)) != (255, 255, 255)
