"""The hrem method end to end: the plugin imports only the plugin surface, published defaults, the
recipes, the training-only module in the optimizer and checkpoints but not in the exported model,
exact resume with neighbour batches, and a tiny HREM learning on shapes."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from hrem_testing import tiny_recipe
from safetensors import safe_open
from safetensors.torch import load_file

from xmodalzoo.registry import resolve_config
from xmodalzoo.eval.evaluate import evaluate
from xmodalzoo.hub.folder import WEIGHTS, load_model
from xmodalzoo.api import build_component as build
from xmodalzoo.method import build_loss
from xmodalzoo.plugins import discover
from xmodalzoo.recipe import load_recipe
from xmodalzoo.registry import REGISTRY
from xmodalzoo.train.trainer import Trainer
from xmodalzoo_hrem.instance import InstanceRelationModule
from xmodalzoo_hrem.sampler import NeighbourBatchSampler

PLUGIN = Path(__file__).resolve().parents[1] / "xmodalzoo_hrem"
RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def test_the_plugin_imports_only_the_plugin_surface_of_the_core() -> None:
    imports = []
    for path in sorted(PLUGIN.glob("*.py")):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from|import)\s+xmodalzoo\b", line):
                imports.append((path.name, line.strip()))
    assert imports and all(re.match(r"from xmodalzoo\.plugin_api import ", line) for _, line in imports), imports


def test_defaults_are_the_published_flickr30k_setting() -> None:
    discover()
    cfg = resolve_config(REGISTRY.get("method", "hrem").config).model_validate({})
    assert cfg.embed_dim == 1024
    assert (cfg.image_encoder.type, cfg.image_encoder.in_dim, cfg.image_encoder.drop_regions) == ("regions", 2048, 0.2)
    assert (cfg.text_encoder.type, cfg.text_encoder.model) == ("transformers", "bert-base-uncased")
    assert (cfg.text_encoder.augment.style, cfg.text_encoder.augment.perturb_prob) == ("vse", 0.2)
    for head in (cfg.image_head, cfg.text_head):
        assert (head.maxk, head.maxk_weight, head.num_heads, head.dropout, head.num_layers) == (2, 0.8, 16, 0.1, 1)
        assert head.maxk_carryover is False and head.eps == 1e-8
    assert (cfg.image_head.projection, cfg.text_head.projection) == ("none", "linear")
    bm = cfg.batch_module
    assert (bm.type, bm.warmup_steps, bm.mechanism, bm.relevance_scale, bm.connect_share, bm.topk, bm.sigma) == \
        ("hrem_relation", 8000, "fusion", 1.0, 0.5, 10, 1.0)
    assert (bm.num_heads, bm.dropout, bm.num_layers, bm.scan_scores, bm.relevance_residual) == (16, 0.1, 1, True, True)
    loss = cfg.loss
    assert (loss.margin, loss.negatives, loss.dw_dim, loss.dw_cutoff, loss.dw_nonzero_cutoff) == \
        (0.2, "distance_weighted", 512, 0.5, 1.7)
    assert (loss.regularizer_weight, loss.cross_terms, loss.anchors) == (10.0, True, "auto")
    assert cfg.similarity.type == "cosine"


def published_recipe(name: str) -> Any:
    return load_recipe(RECIPES / name)


@pytest.mark.parametrize("name, scale, cutoff, batch", [("hrem_f30k.yaml", 1.0, 1.7, 128),
                                                       ("hrem_coco.yaml", 1.5, 1.9, 256)])
def test_published_recipes_carry_the_published_settings(name: str, scale: float, cutoff: float, batch: int) -> None:
    r = published_recipe(name)
    m, t = r.method, r.train
    assert m.type == "hrem" and m.batch_module.relevance_scale == scale and m.loss.dw_nonzero_cutoff == cutoff
    assert m.image_encoder.type == "regions" and m.text_encoder.model == "bert-base-uncased"
    assert (t.batch_size, t.epochs, t.optimizer.name, t.optimizer.lr, t.optimizer.weight_decay, t.grad_clip) == \
        (batch, 30, "adamw", 5e-4, 1e-4, 2.0)
    assert (t.scheduler.name, t.scheduler.milestones, t.scheduler.gamma) == ("step", [15, 25], 0.1)
    assert [(g.pattern, g.lr_mult) for g in t.param_groups] == [("text_encoder.backbone.*", 0.1)]
    assert r.data.type == "precomp" and r.data.splits["val"] == ["dev"]  # model selection on dev, never test


def test_shapes_recipe_matches_vse_shapes_in_data_encoders_and_schedule() -> None:
    """Compared after resolution: recipes state only what they change, so the raw files differ."""
    hrem = load_recipe(RECIPES / "hrem_shapes.yaml").model_dump(mode="json")
    vse = load_recipe(RECIPES / "vse_shapes.yaml").model_dump(mode="json")
    for key in ("data", "train", "eval", "seed"):
        assert hrem[key] == vse[key], key
    for key in ("embed_dim", "image_encoder", "text_encoder"):
        assert hrem["method"][key] == vse["method"][key], key
    ablation = load_recipe(RECIPES / "hrem_shapes.yaml", ["method.batch_module=null"])
    assert ablation.method.batch_module is None
    assert load_recipe(RECIPES / "hrem_shapes.yaml").method.batch_module.type == "hrem_relation"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))


def batch_module_keys(weights: dict[str, Any]) -> list[str]:
    return [k for k in weights if k.startswith("method.batch_module.") or k.startswith("batch_module.")]


def test_training_only_module_is_trained_checkpointed_and_left_out_of_the_model(tmp_path: Path, cache: None) -> None:
    recipe = tiny_recipe(tmp_path, epochs=1)
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.fit()
    module = trainer.method.batch_module
    assert isinstance(module, InstanceRelationModule) and module.active  # 3 steps done: past the warm-up
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in module.parameters())
    last = load_file(str(tmp_path / "run" / "checkpoints/last/weights.safetensors"))
    keys = batch_module_keys(last)
    assert any("graph.mlp_t2i" in k for k in keys) and any(".gnn." in k for k in keys)
    model = tmp_path / "run" / "model"
    with safe_open(str(model / WEIGHTS), framework="pt") as f:
        exported = list(f.keys())
    assert exported and not batch_module_keys({k: None for k in exported})
    assert json.loads((model / "config.json").read_text())["method"]["batch_module"] is None
    loaded = load_model(model)
    assert loaded.batch_module is None
    captions = ["a red circle", "two blue squares"]
    trainer.method.eval()
    torch.testing.assert_close(loaded.embed_texts(captions).vectors, trainer.method.embed_texts(captions).vectors)

    # a fresh trainer resuming from the checkpoint gets the module's trained parameters back
    again = Trainer(recipe, tmp_path / "run", progress=False)
    again.setup()
    fresh = {k: v.clone() for k, v in again.method.batch_module.state_dict().items()}
    assert again.restore()
    restored = again.method.batch_module.state_dict()
    trained = {k.removeprefix("method.batch_module."): v for k, v in last.items() if k.startswith("method.batch_module.")}
    assert trained and all(torch.equal(restored[k], trained[k]) for k in trained)
    assert any(not torch.equal(fresh[k], trained[k]) for k in trained)


@pytest.mark.slow
def test_resume_with_neighbour_batches_gives_the_same_run(tmp_path: Path, cache: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = tiny_recipe(tmp_path, sampler={"type": "hrem_neighbours", "images_per_cluster": 4, "num_clusters": 6})
    straight = Trainer(recipe, tmp_path / "straight", progress=False)
    straight.fit()
    assert isinstance(straight.sampler, NeighbourBatchSampler) and straight.sampler.clustered_epoch == 1

    real_save = Trainer.save_last

    def save_then_crash(self: Trainer) -> None:
        real_save(self)
        if self.epoch == 0:
            raise KeyboardInterrupt("simulated crash after the first epoch's checkpoint")

    monkeypatch.setattr(Trainer, "save_last", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        Trainer(recipe, tmp_path / "resumed", progress=False).fit()
    monkeypatch.setattr(Trainer, "save_last", real_save)
    Trainer(recipe, tmp_path / "resumed", resume=True, progress=False).fit()
    a = load_file(str(tmp_path / "straight" / "checkpoints/last/weights.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints/last/weights.safetensors"))
    assert a.keys() == b.keys() and batch_module_keys(a)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_tiny_hrem_learns_on_shapes(tmp_path: Path, cache: None) -> None:
    recipe = tiny_recipe(tmp_path, epochs=4)
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.setup()
    test = build("dataset", recipe.data, split="test")
    before = evaluate(trainer.method, test, recipe.eval, progress=False)["full"]["rsum"]
    results = trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["kind"] == "step"]
    assert {"enhanced", "cross", "relevance_kl"} <= set(steps[-1]) and "enhanced" not in steps[0]
    base = [x["base"] for x in steps]
    assert sum(base[-3:]) < sum(base[:3])
    assert results["full"]["rsum"] > before + 10, (before, results["full"]["rsum"])


def test_loss_and_module_are_built_from_the_method_config() -> None:
    discover()
    cfg = resolve_config(REGISTRY.get("method", "hrem").config).model_validate({"batch_module": None})
    assert build_loss(cfg).cfg.negatives == "distance_weighted" and cfg.batch_module is None


def test_attention_heads_that_do_not_divide_embed_dim_fail_validation_in_one_line(tmp_path: Path) -> None:
    from xmodalzoo.cli import main

    assert main(["validate", str(RECIPES / "hrem_shapes.yaml"), "--set", "method.embed_dim=250"]) == 2
    assert main(["validate", str(RECIPES / "hrem_shapes.yaml"), "--set", "method.embed_dim=128"]) == 0
    with pytest.raises(Exception, match=r"batch_module.num_heads \(5\) must divide embed_dim \(256\)"):
        load_recipe(RECIPES / "hrem_shapes.yaml", ["method.batch_module.num_heads=5"])
