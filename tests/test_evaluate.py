"""The evaluation loop end to end on a tiny fake dataset and a stub method with known embeddings.

Each image is the one-hot vector of its index; each caption text names the image whose one-hot
vector it embeds to.  Expected recalls are worked out by hand from those embeddings.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from xmodalzoo.data.base import RetrievalDataset
from xmodalzoo.data.batch import TextBatch
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.eval import EvalConfig, evaluate, evaluate_embeddings, results_table, write_results
from xmodalzoo.similarity import Cosine

NUM_IMAGES = 4
CAPTIONS_PER_IMAGE = 2


class FakeDataset(RetrievalDataset):
    """``NUM_IMAGES`` one-hot feature images with 2 captions each; counts ``load_image`` calls."""

    image_kind = "features"

    def __init__(self, caption_targets: list[int], labels: bool = True) -> None:
        self.name, self.split = "fake", "test"
        self.image_ids = list(range(NUM_IMAGES))
        self.caption_to_image = np.repeat(np.arange(NUM_IMAGES), CAPTIONS_PER_IMAGE)
        self.caption_ids = list(range(len(self.caption_to_image)))
        self.captions = [f"looks like image {t}" for t in caption_targets]
        self.loads = np.zeros(NUM_IMAGES, dtype=int)
        own = torch.from_numpy(self.caption_to_image)[:, None] == torch.arange(NUM_IMAGES)[None, :]
        self.positives = own
        if labels:
            # 3 bits per image, disjoint: images differ by 6 bits, so PMRP positives (ζ ≤ 2) are own pairs
            img = torch.zeros(NUM_IMAGES, 3 * NUM_IMAGES)
            for i in range(NUM_IMAGES):
                img[i, 3 * i : 3 * i + 3] = 1
            self.image_labels = img
            self.caption_labels = img[torch.from_numpy(self.caption_to_image)]

    def load_image(self, index: int) -> np.ndarray:
        self.loads[index] += 1
        return np.eye(NUM_IMAGES, dtype=np.float32)[index]


class StubMethod(nn.Module):
    """Images embed as their features; a caption embeds as the one-hot vector it names."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.similarity = Cosine()
        self.modes: list[bool] = []

    def image_transform(self, train: bool = False):  # type: ignore[no-untyped-def]
        return lambda array: torch.as_tensor(array)

    def tokenize(self, texts: list[str], train: bool = False) -> TextBatch:
        ids = torch.tensor([[int(t.split()[-1])] for t in texts])
        return TextBatch(ids, torch.ones_like(ids, dtype=torch.bool))

    def encode_image(self, images: torch.Tensor) -> PointEmbedding:
        self.modes.append(self.training)
        return PointEmbedding(images * self.scale)

    def encode_text(self, texts: TextBatch) -> PointEmbedding:
        self.modes.append(self.training)
        return PointEmbedding(torch.eye(NUM_IMAGES)[texts.ids[:, 0]] * self.scale)


def cfg(**kw) -> EvalConfig:  # type: ignore[no-untyped-def]
    return EvalConfig(device="cpu", batch_size=3, **kw)


def test_perfect_embeddings_score_100_everywhere() -> None:
    data = FakeDataset(caption_targets=[0, 0, 1, 1, 2, 2, 3, 3])
    res = evaluate(StubMethod(), data, cfg(), progress=False)
    full = res["full"]
    for d in ("i2t", "t2i"):
        assert full[f"{d}_r1"] == full[f"{d}_r5"] == full[f"{d}_r10"] == 100.0
        assert full[f"{d}_medr"] == full[f"{d}_meanr"] == 1.0
        assert full[f"r_precision_{d}"] == full[f"map_at_r_{d}"] == 100.0
        assert full[f"pmrp_{d}"] == full[f"pmrp_{d}_z0"] == full[f"pmrp_{d}_z2"] == 100.0
    assert full["rsum"] == 600.0
    meta = res["meta"]
    assert (meta["num_images"], meta["num_captions"], meta["similarity"]) == (4, 8, "Cosine")
    assert meta["seconds"] >= meta["encode_seconds"] >= 0
    json.dumps(res, allow_nan=False)  # JSON-serialisable as is


def test_one_wrong_caption_gives_hand_computed_metrics() -> None:
    # caption 1 (of image 0) embeds like image 1; every other caption embeds like its own image
    targets = [0, 1, 1, 1, 2, 2, 3, 3]
    method = StubMethod().train()
    res, ranks = evaluate(method, FakeDataset(targets), cfg(), progress=False, return_ranks=True)
    full = res["full"]
    # t2i: caption 1 scores 1 on image 1 and ties at 0 on images 0, 2, 3 -> image 0 comes 2nd
    assert ranks["full"]["t2i"].tolist() == [1, 2, 1, 1, 1, 1, 1, 1]
    # i2t: image 1 ties at 1 with captions 1, 2, 3; caption 1 (lower index, not its own) ranks first
    assert ranks["full"]["i2t"].tolist() == [1, 2, 1, 1]
    assert full["t2i_r1"] == 87.5 and full["t2i_r5"] == 100.0 and full["t2i_meanr"] == 1.125
    assert full["i2t_r1"] == 75.0 and full["i2t_meanr"] == 1.25 and full["i2t_medr"] == 1.0
    assert full["rsum"] == 87.5 + 75.0 + 4 * 100.0
    # R = 2 for images: image 1's top 2 are captions 1 (miss) and 2 (hit)
    assert full["r_precision_i2t"] == pytest.approx(100 * (1 + 0.5 + 1 + 1) / 4)
    assert full["map_at_r_i2t"] == pytest.approx(100 * (1 + 0.25 + 1 + 1) / 4)
    assert full["r_precision_t2i"] == full["map_at_r_t2i"] == 87.5
    # labels put only own pairs within ζ ≤ 2, so PMRP equals R-Precision here
    assert full["pmrp_i2t"] == full["pmrp_i2t_z1"] == pytest.approx(full["r_precision_i2t"])
    assert full["pmrp_t2i"] == pytest.approx(87.5)
    # encoding ran in eval mode and restored the training mode
    assert method.modes and not any(method.modes) and method.training


def test_images_and_captions_are_encoded_once() -> None:
    data = FakeDataset(list(np.repeat(np.arange(NUM_IMAGES), 2)))
    method = StubMethod()
    evaluate(method, data, cfg(), progress=False)
    assert data.loads.tolist() == [1] * NUM_IMAGES
    # batch_size 3: ceil(4 / 3) image batches + ceil(8 / 3) caption batches
    assert len(method.modes) == 2 + 3


def test_metric_keys_depend_on_what_the_data_provide() -> None:
    data = FakeDataset(list(np.repeat(np.arange(NUM_IMAGES), 2)), labels=False)
    data.positives = None
    res = evaluate(StubMethod(), data, cfg(), progress=False)
    assert not [k for k in res["full"] if k.startswith(("pmrp", "r_precision", "map_at_r"))]
    assert "i2t_r1" in res["full"] and "t2i_meanr" in res["full"]


def test_coco1k_is_the_mean_of_per_fold_full_evaluations() -> None:
    gen = torch.Generator().manual_seed(0)
    n_img, per = 2000, 1
    img = PointEmbedding(torch.randn(n_img, 4, generator=gen))
    cap = PointEmbedding(img.vectors + 1.5 * torch.randn(n_img * per, 4, generator=gen))
    c2i = np.arange(n_img)
    res = evaluate_embeddings(Cosine(), img, cap, c2i, cfg(), protocols=["coco1k", "full"])
    assert res["meta"]["folds"] == {"coco1k": 2, "full": 1}
    halves = [
        evaluate_embeddings(Cosine(), img[f * 1000 : (f + 1) * 1000], cap[f * 1000 : (f + 1) * 1000],
                            np.arange(1000), cfg(), protocols=["full"])["full"]
        for f in range(2)
    ]
    for key, value in res["coco1k"].items():
        assert value == pytest.approx((halves[0][key] + halves[1][key]) / 2), key
    assert res["coco1k"]["i2t_r1"] > res["full"]["i2t_r1"]  # fewer distractors in a 1K fold


def test_a_protocol_the_split_cannot_serve_fails_before_encoding() -> None:
    data = FakeDataset(list(np.repeat(np.arange(NUM_IMAGES), 2)))
    method = StubMethod()
    with pytest.raises(ValueError, match="coco5k needs at least 5000 images.*the test split has 4"):
        evaluate(method, data, cfg(), protocols=["full", "coco5k"], progress=False)
    assert data.loads.tolist() == [0] * NUM_IMAGES and method.modes == []


def test_precomputed_embeddings_report_no_encoding_time() -> None:
    data = FakeDataset(list(np.repeat(np.arange(NUM_IMAGES), 2)))
    method = StubMethod()
    first = evaluate(method, data, cfg(), progress=False)
    again = evaluate(method, data, cfg(), progress=False,
                     embeddings=(PointEmbedding(torch.eye(NUM_IMAGES)), PointEmbedding(torch.eye(NUM_IMAGES).repeat_interleave(2, 0))))
    assert first["meta"]["encode_seconds"] > 0 and again["meta"]["encode_seconds"] is None
    assert again["full"] == first["full"]


def test_evaluate_embeddings_rejects_mismatched_inputs() -> None:
    img = PointEmbedding(torch.eye(3))
    with pytest.raises(ValueError, match="4 caption embeddings for 3 captions"):
        evaluate_embeddings(Cosine(), img, PointEmbedding(torch.eye(4)[:, :3]), np.arange(3), cfg())
    with pytest.raises(ValueError, match=r"have no caption \(first: \[2\]\)"):
        evaluate_embeddings(Cosine(), img, PointEmbedding(torch.eye(3)[:2]), np.array([0, 1]), cfg())
    with pytest.raises(ValueError, match="coco1k needs at least 1000 images"):
        evaluate_embeddings(Cosine(), img, img, np.arange(3), cfg(), protocols=["coco1k"])


def test_table_and_json_report(tmp_path: Path) -> None:
    results = {"full": {"i2t_r1": 12.345, "rsum": 300.0, "pmrp_i2t": float("nan")},
               "coco1k": {"i2t_r1": 50.0}, "meta": {"num_images": 4}}
    table = results_table(results)
    assert [c.header for c in table.columns] == ["protocol", "dir", "R@1", "PMRP", "RSUM"]
    assert table.row_count == 4  # two protocols × two directions
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert "12.3" in text and "300.0" in text and "meta" not in text
    path = write_results(results, tmp_path / "out" / "results.json")
    assert json.loads(path.read_text())["full"] == {"i2t_r1": 12.345, "rsum": 300.0, "pmrp_i2t": None}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left behind
