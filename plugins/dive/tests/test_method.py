"""The dive method: published defaults, recipes, the similarity ablation as one-line changes and the
model-folder round trip (learning on shapes through the trainer: tests/test_methods_learn.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

import xmodalzoo as zoo
from xmodalzoo.registry import resolve_config
from xmodalzoo.api import build_component as build
from xmodalzoo.method import build_loss
from xmodalzoo.recipe import load_recipe
from xmodalzoo.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
RECIPES = ROOT / "recipes"
PLUGIN = Path(__file__).resolve().parents[1] / "xmodalzoo_dive"


def _defaults():  # type: ignore[no-untyped-def]
    return resolve_config(REGISTRY.get("method", "dive").config).model_validate({"type": "dive"})


def test_plugin_imports_only_the_plugin_api() -> None:
    for path in PLUGIN.glob("*.py"):
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:from|import)\s+(xmodalzoo[\w.]*)", line)
            assert m is None or m.group(1) == "xmodalzoo.plugin_api", f"{path.name}: {line.strip()}"


def test_defaults_are_the_released_coco_recipe() -> None:
    cfg = _defaults()
    assert cfg.embed_dim == 1024 and cfg.similarity.type == "smooth_chamfer" and cfg.similarity.alpha == 16.0
    for head in (cfg.image_head, cfg.text_head):
        assert head.type == "dive_slots"
        assert (head.num_slots, head.iterations, head.share_weights) == (4, 4, True)
        assert (head.attention_heads, head.head_dim, head.ff_mult, head.dropout) == (4, 512, 4.0, 0.1)
        assert (head.padding, head.slot_init, head.update) == ("official", "learned", "residual")
    loss = build_loss(cfg)
    assert (loss.cfg.margin, loss.cfg.negatives, loss.cfg.mmd_weight, loss.cfg.mmd_gamma) == (0.2, "hardest", 0.01, 0.5)
    assert (loss.cfg.uniformity_weight, loss.cfg.uniformity_t, loss.cfg.uniformity_on) == (0.01, 2.0, "slots")
    img, txt = cfg.image_encoder, cfg.text_encoder
    assert (img.type, img.in_dim, img.out_dim, img.drop_regions, img.dropout, img.mlp_input) == (
        "regions", 2048, 1024, 0.2, 0.1, "projection")
    assert (txt.type, txt.word_dim, txt.hidden_dim, txt.combine, txt.global_feature, txt.dropout) == (
        "bigru", 300, 1024, "mean", "final_states", 0.1)
    assert (txt.augment.style, txt.augment.perturb_prob) == ("vse", 0.2)


def test_default_model_shapes() -> None:
    """The full-size default method: 36 regions and a caption -> 4 x 1024 elements per item."""
    torch.manual_seed(0)
    cfg = _defaults()
    method = build("method", cfg, train_captions=["a man rides a horse", "two dogs"]).eval()
    with torch.no_grad():
        img = method.encode_image(torch.randn(2, 36, 2048))
        txt = method.encode_text(["a man rides a horse", "two dogs"])
    assert img.vectors.shape == (2, 4, 1024) and txt.vectors.shape == (2, 4, 1024)
    assert method.score(img, txt).shape == (2, 2)
    spm = method.image_head.spm.blocks[0].attention
    assert (spm.heads, spm.head_dim, spm.to_k.in_features) == (4, 512, 1024)
    assert method.text_head.spm.blocks[0].attention.to_k.in_features == 300  # the slots read the word embeddings


@pytest.mark.parametrize("name", ["dive_shapes", "dive_coco", "dive_coco_resnet"])
def test_recipes_validate(name: str) -> None:
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.method.type == "dive" and recipe.train.sampler.type == "image_captions"
    if name != "dive_shapes":
        assert (recipe.train.epochs, recipe.train.batch_size, recipe.train.grad_clip) == (80, 200, 1.0)
        assert (recipe.train.optimizer.name, recipe.train.optimizer.lr, recipe.train.scheduler.name) == (
            "adamw", 1e-3, "cosine")
        assert recipe.train.precision == "fp16" and recipe.method.loss.negatives == "hardest"
        assert {g.pattern: g.lr_mult for g in recipe.train.param_groups}["text_head"] == 0.1


def test_shapes_recipe_shares_data_schedule_and_encoders_with_the_others() -> None:
    """Compared after resolution: recipes state only what they change, so the raw files differ."""
    dive, vse, pvse = (load_recipe(RECIPES / f"{n}.yaml").model_dump(mode="json")
                       for n in ("dive_shapes", "vse_shapes", "pvse_shapes"))
    assert dive["data"] == vse["data"] and dive["eval"] == vse["eval"]
    same = ("epochs", "optimizer", "scheduler", "grad_clip")
    assert {k: dive["train"][k] for k in same} == {k: vse["train"][k] for k in same}
    # 64 images x their 2 captions = the 128 captions per batch of the others
    assert dive["train"]["batch_size"] * dive["data"]["captions_per_image"] == vse["train"]["batch_size"]
    assert dive["method"]["image_encoder"] == pvse["method"]["image_encoder"]
    assert dive["method"]["text_encoder"] == vse["method"]["text_encoder"]
    assert dive["method"]["embed_dim"] == vse["method"]["embed_dim"]


@pytest.mark.parametrize("similarity", ["mil_max", "set_match_prob", "chamfer", "smooth_chamfer"])
def test_ablation_is_a_one_line_change(similarity: str) -> None:
    if similarity not in REGISTRY.entries["similarity"]:
        pytest.skip(f"{similarity} comes from a plugin that is not installed")
    recipe = load_recipe(RECIPES / "dive_shapes.yaml", [f"method.similarity.type={similarity}"])
    assert recipe.method.similarity.type == similarity
    assert recipe.method.image_head.type == "dive_slots" and recipe.method.loss.type == "dive"


# ------------------------------------------------------------------------------------ learning on shapes

TINY = {
    "name": "tiny_dive",
    "seed": 0,
    "data": {"type": "shapes", "image_size": 32, "train_size": 128, "val_size": 40, "test_size": 40},
    "method": {
        "type": "dive",
        "embed_dim": 32,
        "image_encoder": {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 32,
                          "transform": {"train_crop": "resize_random", "resize_ratio": 1.0}},
        "text_encoder": {"type": "bigru", "word_dim": 32, "hidden_dim": 32, "combine": "mean"},
        "image_head": {"type": "dive_slots", "attention_heads": 2, "head_dim": 8, "iterations": 2,
                       "global_feature": "pooled", "project_global": True},
        "text_head": {"type": "dive_slots", "attention_heads": 2, "head_dim": 8, "iterations": 2},
        "loss": {"type": "dive", "negatives": "all"},
    },
    "train": {"epochs": 4, "batch_size": 16, "sampler": {"type": "image_captions"},
              "optimizer": {"name": "adamw", "lr": 2.0e-3}, "scheduler": {"name": "constant", "warmup": 0},
              "log_every": 1},
    "eval": {"batch_size": 64, "protocols": ["full"]},
}


def _tiny_recipe(tmp_path: Path, monkeypatch) -> object:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny_dive.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    return load_recipe(path)


def test_model_folder_round_trip_gives_the_same_embeddings(tmp_path: Path, monkeypatch) -> None:
    from xmodalzoo.hub import save_model

    recipe = _tiny_recipe(tmp_path, monkeypatch)
    data = build("dataset", recipe.data, split="test")
    torch.manual_seed(0)
    method = zoo.build_method(recipe, train_captions=list(data.captions)).eval()
    with torch.no_grad():  # move every weight off its initial value, as training would
        for p in method.parameters():
            p.add_(0.01 * torch.randn_like(p))
    images = [data.load_image(i) for i in range(5)]
    captions = list(data.captions[:7])
    img, txt = method.embed_images(images), method.embed_texts(captions)
    assert img.vectors.shape == (5, 4, 32) and txt.vectors.shape == (7, 4, 32)
    save_model(method, tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    torch.testing.assert_close(loaded.embed_images(images).vectors, img.vectors)
    torch.testing.assert_close(loaded.embed_texts(captions).vectors, txt.vectors)
    scores, index = loaded.search(txt, img, k=3)
    best = loaded.score(txt, img).sort(dim=1, descending=True, stable=True)
    assert torch.equal(index, best.indices[:, :3])
    torch.testing.assert_close(scores, best.values[:, :3])



@pytest.mark.parametrize("similarity", ["mil_max", "set_match_prob", "chamfer", "smooth_chamfer"])
def test_ablation_similarities_train_the_same_model(similarity: str, tmp_path: Path, monkeypatch) -> None:
    """Each ablation similarity gives the DivE loss a finite value whose gradient reaches both slot modules."""
    if similarity not in REGISTRY.entries["similarity"]:
        pytest.skip(f"{similarity} comes from a plugin that is not installed")
    from xmodalzoo.losses.base import LossContext

    _tiny_recipe(tmp_path, monkeypatch)  # writes tiny_dive.yaml, points the data cache into tmp_path
    recipe = load_recipe(tmp_path / "tiny_dive.yaml", [f"method.similarity.type={similarity}"])
    data = build("dataset", recipe.data, split="train")
    torch.manual_seed(0)
    method = zoo.build_method(recipe, train_captions=list(data.captions)).train()
    assert method.similarity is not None and recipe.method.similarity.type == similarity
    transform = method.image_transform(train=True)
    images = torch.stack([transform(data.load_image(i)) for i in range(4)])
    caps = [int(c) for i in range(4) for c in data.captions_of(i)]
    image_of = torch.tensor([int(data.caption_to_image[c]) for c in caps])
    img = method.encode_image(images)
    txt = method.encode_text([data.captions[c] for c in caps])
    positives = torch.arange(4)[:, None] == image_of[None, :]
    out = build_loss(recipe.method)(img, txt, LossContext(positives, method.similarity))
    assert torch.isfinite(out.loss) and {"i2t", "t2i", "mmd", "uniformity"} <= set(out.terms)
    out.loss.backward()
    for head in (method.image_head, method.text_head):
        assert head.spm.slots.grad is not None and head.spm.slots.grad.abs().sum() > 0
