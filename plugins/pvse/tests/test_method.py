"""The pvse method through the registry: defaults, a training step, composition with another plugin's
similarity, and the recipes' method/train/eval sections."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from xmodalzoo.config import ComponentConfig
from xmodalzoo.registry import resolve_config
from xmodalzoo.data.batch import Batch, TextBatch
from xmodalzoo.embeddings import Embedding, SetEmbedding
from xmodalzoo.encoders.base import EncoderOutput, ImageEncoder, TextEncoder
from xmodalzoo.eval.config import EvalConfig
from xmodalzoo.losses.base import LossContext
from xmodalzoo.api import build_component as build
from xmodalzoo.method import Method, build_loss
from xmodalzoo.plugins import discover, load_plugin
from xmodalzoo.registry import REGISTRY
from xmodalzoo.similarity.base import Similarity
from xmodalzoo.train.config import TrainConfig
from xmodalzoo_pvse.similarity import MILMax

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


class TinyImages(ImageEncoder):
    """Images (B, 3, 4, 4) -> 16 cells of 6 features; pooled = mean of the cells."""

    pooled_dim = local_dim = input_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 6)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        local = self.proj(images.flatten(2).transpose(1, 2))
        mask = torch.ones(local.shape[:2], dtype=torch.bool)
        return EncoderOutput(local.mean(1), local, mask)


class TinyWords(TextEncoder):
    """Token ids -> 4-d word embeddings (inputs), 6-d word states (local), masked-mean pooled."""

    pooled_dim = local_dim = 6
    input_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 4)
        self.proj = nn.Linear(4, 6)

    def forward(self, texts: TextBatch) -> EncoderOutput:
        words = self.embed(texts.ids)
        local = torch.tanh(self.proj(words))
        m = texts.mask[..., None].float()
        return EncoderOutput((local * m).sum(1) / m.sum(1).clamp(min=1), local, texts.mask, words)


class MeanCosineSet(Similarity):
    """Mean of the K × K' cosines: a set similarity that is not PVSE's."""

    accepts = (SetEmbedding,)

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        q, g = F.normalize(query.vectors, dim=-1), F.normalize(gallery.vectors, dim=-1)  # type: ignore[attr-defined]
        return torch.einsum("nkd,mld->nmkl", q, g).mean((2, 3))


def register_throwaway(r: Any) -> None:
    r.add("image_encoder", "tiny_images", lambda cfg, **_: TinyImages(), ComponentConfig, "test images")
    r.add("text_encoder", "tiny_words", lambda cfg, **_: TinyWords(), ComponentConfig, "test words")
    r.add("similarity", "mean_cosine_set", lambda cfg, **_: MeanCosineSet(), ComponentConfig, "test set similarity")


@pytest.fixture
def throwaway_plugin() -> Iterator[None]:
    discover()
    load_plugin("throwaway", "throwaway-test", "0", register_throwaway)
    try:
        yield
    finally:
        discover(force=True)
    assert "mean_cosine_set" not in REGISTRY.entries["similarity"]


def tiny_batch(seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 20, (6, 5), generator=gen)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0], [1] * 2 + [0] * 3, [1] * 5, [1] + [0] * 4]).bool()
    return Batch(
        images=torch.randn(3, 3, 4, 4, generator=gen),
        texts=TextBatch(ids * mask, mask),
        image_index=torch.tensor([10, 11, 12]),
        caption_index=torch.arange(6),
        caption_image=torch.tensor([0, 0, 1, 1, 2, 2]),
    )


TINY = {"type": "pvse", "embed_dim": 8, "image_encoder": {"type": "tiny_images"}, "text_encoder": {"type": "tiny_words"}}


def test_defaults_are_pvse(throwaway_plugin: None) -> None:
    cfg = REGISTRY.get("method", "pvse").validate(TINY)
    method = build("method", cfg)
    assert isinstance(method, Method) and isinstance(method.similarity, MILMax)
    assert method.image_head.num_heads == 2 and method.text_head.num_heads == 2
    assert method.image_head.source == "local" and method.text_head.source == "inputs"
    loss = build_loss(cfg)
    assert (loss.cfg.margin, loss.cfg.diversity_weight, loss.cfg.mmd_weight, loss.cfg.mmd_gamma) == (0.1, 0.1, 0.01, 0.5)


def test_training_steps_lower_the_loss(throwaway_plugin: None) -> None:
    torch.manual_seed(0)
    cfg = REGISTRY.get("method", "pvse").validate(TINY)
    method, loss = build("method", cfg), build_loss(cfg)
    batch = tiny_batch()
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    values = []
    for _ in range(15):
        img, txt, _ = method(batch)
        assert img.vectors.shape == (3, 2, 8) and txt.vectors.shape == (6, 2, 8)
        out = loss(img, txt, LossContext(batch.positives(), method.similarity))
        assert set(out.terms) == {"i2t", "t2i", "diversity", "mmd"}
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        values.append((out.terms["i2t"] + out.terms["t2i"]).item())
    # the triplet part (the regularisers have a floor)
    assert values[-1] < 0.7 * values[0], values


def test_pie_heads_compose_with_another_plugins_set_similarity(throwaway_plugin: None) -> None:
    recipe_method = yaml.safe_load(
        "type: pvse\n"
        "embed_dim: 8\n"
        "image_encoder: {type: tiny_images}\n"
        "text_encoder: {type: tiny_words}\n"
        "image_head: {type: pvse_pie, num_heads: 3}\n"
        "text_head: {type: pvse_pie, num_heads: 2}\n"
        "similarity: {type: mean_cosine_set}\n"
    )
    cfg = resolve_config(REGISTRY.get("method", "pvse").config).model_validate(recipe_method)
    method = build("method", cfg)
    assert isinstance(method.similarity, MeanCosineSet)
    batch = tiny_batch()
    img, txt, _ = method(batch)
    scores = method.score(img, txt)
    want = torch.stack([torch.stack([
        F.cosine_similarity(img.vectors[i][:, None], txt.vectors[t][None], dim=-1).mean() for t in range(6)
    ]) for i in range(3)])
    assert torch.allclose(scores, want, atol=1e-6)
    out = build_loss(cfg)(img, txt, LossContext(batch.positives(), method.similarity))
    out.loss.backward()
    assert all(p.grad is not None for p in method.image_head.parameters())


@pytest.mark.parametrize("name", ["pvse_shapes", "pvse_coco"])
def test_recipe_sections_validate(name: str) -> None:
    data = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    discover()
    method = resolve_config(REGISTRY.get("method", data["method"]["type"]).config).model_validate(data["method"])
    assert method.image_head.type == method.text_head.type == "pvse_pie"
    assert method.image_head.num_heads == method.text_head.num_heads == 2
    assert method.similarity.type == "mil_max" and method.loss.type == "pvse"
    TrainConfig.model_validate(data["train"])
    EvalConfig.model_validate(data["eval"])


def test_shapes_recipe_matches_vse_shapes_outside_the_pvse_parts() -> None:
    vse_path = RECIPES / "vse_shapes.yaml"
    if not vse_path.exists():
        pytest.skip("recipes/vse_shapes.yaml not written yet")
    vse, pvse = (yaml.safe_load(p.read_text()) for p in (vse_path, RECIPES / "pvse_shapes.yaml"))
    assert pvse["data"] == vse["data"] and pvse["train"] == vse["train"] and pvse["eval"] == vse["eval"]
    for key in ("embed_dim", "text_encoder"):
        assert pvse["method"][key] == vse["method"][key], key
    # the same image encoder, with the heads' cells taken from the 4 x 4 stride-16 stage
    image = dict(pvse["method"]["image_encoder"])
    assert image.pop("local_stage") == 3 and image == vse["method"]["image_encoder"]


def test_coco_recipe_fine_tunes_cnn_and_word_embeddings() -> None:
    data = yaml.safe_load((RECIPES / "pvse_coco.yaml").read_text())
    train = TrainConfig.model_validate(data["train"])
    assert train.freeze == [] and all(g.lr_mult > 0 for g in train.param_groups)
    assert (train.optimizer.name, train.optimizer.lr, train.optimizer.amsgrad) == ("adam", 2e-4, True)
    assert (train.epochs, train.batch_size, train.grad_clip) == (30, 256, 2.0)
