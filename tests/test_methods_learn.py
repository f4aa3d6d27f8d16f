"""Every first-party method learns on the tiny shapes recipe: the loss falls and test recall rises.

These go through the shared trainer exactly as ``zoo train`` does; only the method section differs.
"""
from __future__ import annotations

import json

import pytest
import torch

from tiny import write_recipe
from xmodalzoo.eval.evaluate import evaluate
from xmodalzoo.method import build
from xmodalzoo.recipe import load_recipe
from xmodalzoo.train.trainer import Trainer

ENCODERS = {
    "embed_dim": 32,
    "image_encoder": {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 32,
                      "transform": {"train_crop": "resize_random", "resize_ratio": 1.0}},
    "text_encoder": {"type": "bigru", "word_dim": 32, "hidden_dim": 32, "combine": "mean"},
}
METHODS = {
    "pcme": {
        "type": "pcme",
        "image_head": {"type": "pcme_gaussian", "source": "local", "d_hidden": 16, "logvar_init": -8.0},
        "text_head": {"type": "pcme_gaussian", "source": "inputs", "d_hidden": 16, "sigma_gru": True,
                      "logvar_init": -8.0},
        "similarity": {"type": "match_prob", "num_samples": 3, "init_scale": 5.0, "init_shift": 5.0},
        "loss": {"type": "pcme", "vib_weight": 1.0e-4},
    },
    "pvse": {
        "type": "pvse",
        "image_head": {"type": "pvse_pie", "num_heads": 2, "source": "local"},
        "text_head": {"type": "pvse_pie", "num_heads": 2, "source": "inputs", "project_global": False},
        "similarity": {"type": "mil_max"},
        "loss": {"type": "pvse", "margin": 0.2, "hardest": False},
    },
}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(2)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_lowers_loss_and_raises_recall(tmp_path, name):
    recipe = load_recipe(write_recipe(tmp_path, name=f"tiny_{name}", method={**ENCODERS, **METHODS[name]},
                                      train={"epochs": 4, "scheduler": {"name": "constant", "warmup": 0}}))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.setup()
    test = build("dataset", recipe.data, split="test")
    before = evaluate(trainer.method, test, recipe.eval, progress=False)
    after = trainer.fit()
    epochs = [x for x in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if x["kind"] == "epoch"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert after["full"]["rsum"] > before["full"]["rsum"] + 10, (before["full"]["rsum"], after["full"]["rsum"])
