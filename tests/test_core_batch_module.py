"""A training-only batch module (``Method.batch_module``): switched on by the trainer after its
warm-up, trained with the model, and left out of the saved model folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors import safe_open
from torch import nn

from xmodalzoo.config import Component, ComponentConfig
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.hub.folder import WEIGHTS, load_model, save_model
from xmodalzoo.losses.base import Loss, LossContext, LossOutput
from xmodalzoo.method import MethodConfig, assemble_method as build_method
from xmodalzoo.plugins import Registrar, load_plugin
from xmodalzoo.recipe import validate_recipe
from xmodalzoo.train.trainer import Trainer

WARMUP = 3


class RelationModule(nn.Module):
    """Refines image embeddings with attention over the batch's captions (HREM-like, tiny)."""

    def __init__(self, dim: int, warmup_steps: int) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim)
        self.warmup_steps = warmup_steps
        self.active = False
        self.calls = 0

    def forward(self, img: PointEmbedding, txt: PointEmbedding, batch: Any) -> dict[str, Any]:
        self.calls += 1
        attn = (img.vectors @ txt.vectors.t()).softmax(-1)
        return {"image": PointEmbedding(F.normalize(self.mix(img.vectors + attn @ txt.vectors), dim=-1))}


class BatchModuleMethodConfig(MethodConfig):
    embed_dim: int = 16
    warmup_steps: int = Field(WARMUP, description="steps before the relation module is switched on")
    image_encoder: Component["image_encoder"] = {"type": "timm", "model": "test_convnext", "pretrained": False,
                                                 "image_size": 32}
    text_encoder: Component["text_encoder"] = {"type": "bigru", "word_dim": 16, "hidden_dim": 16}
    loss: Component["loss"] = {"type": "relation_loss"}


class RelationLoss(Loss):
    """Contrastive loss on the embeddings, plus the same on the relation-refined ones when present."""

    def forward(self, image: Any, text: Any, ctx: LossContext) -> LossOutput:
        def nce(img: torch.Tensor) -> torch.Tensor:
            logits = 10 * img @ text.vectors.t()
            target = ctx.positives.float() / ctx.positives.float().sum(1, keepdim=True)
            return -(target * logits.log_softmax(1)).sum(1).mean()

        base = nce(image.vectors)
        terms = {"base": base.detach()}
        loss = base
        if "image" in ctx.extras:
            rel = nce(ctx.extras["image"].vectors)
            terms["relation"] = rel.detach()
            loss = loss + rel
        return LossOutput(loss, terms)


def register(r: Registrar) -> None:
    r.add("method", "relation_demo",
          lambda cfg, **ctx: build_method(cfg, batch_module=RelationModule(cfg.embed_dim, cfg.warmup_steps), **ctx),
          BatchModuleMethodConfig, doc="Demo method with a training-only batch module.")
    r.add("loss", "relation_loss", lambda cfg, **_: RelationLoss(), ComponentConfig)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def trainer(restore_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    load_plugin("relation_demo", "dist-relation-demo", "0.1", register)
    recipe = validate_recipe({
        "data": {"type": "shapes", "image_size": 32, "train_size": 16, "val_size": 8, "test_size": 8, "cache": False},
        "method": {"type": "relation_demo"},
        "train": {"epochs": 1, "batch_size": 8, "sampler": {"type": "random_images"},
                  "optimizer": {"name": "adamw", "lr": 1e-3}, "num_workers": 0},
    })
    t = Trainer(recipe, tmp_path / "run", progress=False)
    t.setup()
    return t


def batch_module_grads(method: Any) -> list[torch.Tensor | None]:
    return [p.grad for p in method.batch_module.parameters()]


def test_batch_module_switches_on_after_warmup_and_is_trained(trainer: Trainer) -> None:
    method, bm = trainer.method, trainer.method.batch_module
    assert isinstance(bm, RelationModule) and sum(p.numel() for p in bm.parameters()) > 0
    # its parameters are the model's, so the optimizer updates them
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in bm.parameters())
    batch = next(iter(trainer.loader))

    trainer.step = WARMUP - 1  # still warming up: the module is off, the loss has no relation term
    logs = trainer.train_step(batch)
    assert bm.active is False and bm.calls == 0 and "relation" not in logs
    assert all(g is None for g in batch_module_grads(method))
    assert method.image_head.proj.weight.grad is not None  # the rest of the model did train
    trainer.optimizer.zero_grad(set_to_none=True)

    trainer.step = WARMUP  # warm-up over: on, and its parameters receive gradients
    logs = trainer.train_step(batch)
    assert bm.active is True and bm.calls == 1 and "relation" in logs
    grads = batch_module_grads(method)
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_saved_model_folder_has_no_batch_module(trainer: Trainer, tmp_path: Path) -> None:
    method = trainer.method
    trainer.step = WARMUP
    trainer.train_step(next(iter(trainer.loader)))
    trainer.optimizer_step()
    folder = save_model(method, tmp_path / "model")
    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("batch_module.") or ".mix." in k for k in keys)
    assert any(k.startswith("image_head.") for k in keys)

    loaded = load_model(folder)  # loads strictly without the batch module's weights
    assert not loaded.training
    captions = ["a red circle", "two blue squares"]
    method.eval()
    assert torch.equal(loaded.embed_texts(captions).vectors, method.embed_texts(captions).vectors)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images).vectors, method.encode_image(images).vectors)
