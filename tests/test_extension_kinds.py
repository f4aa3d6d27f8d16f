"""Extension points that are registry kinds: a plugin's tokenizer reloads from a model folder, and a
training-only batch module named in a recipe is built, switched on by the trainer and left out of
model folders.  Also: configs have one shape after validation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

import xmodalzoo as zoo
from tiny import TINY
from xmodalzoo.errors import ModelFolderError
from xmodalzoo.hub.folder import CONFIG, load_model, save_model
from xmodalzoo.plugin_api import (
    BatchModule, Component, ComponentConfig, EncoderOutput, MethodConfig, PointEmbedding, TextBatch, TextEncoder, Tokenizer,
    assemble_method,
)
from xmodalzoo.plugins import discover, load_plugin
from xmodalzoo.recipe import validate_recipe
from xmodalzoo.registry import REGISTRY, Registrar
from xmodalzoo.train.trainer import Trainer

CAPTIONS = ["a red circle", "two blue squares", "something yellow", "a green star"]
TINY_IMAGES = {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 32}


# ------------------------------------------------------------------------- a plugin's own tokenizer


class CharTokenizer(Tokenizer):
    """One id per character (0 = padding), from an alphabet saved as ``alphabet.txt``."""

    type = "chars"

    def __init__(self, alphabet: str, max_length: int = 24) -> None:
        self.alphabet, self.max_length = alphabet, max_length
        self.index = {c: i + 1 for i, c in enumerate(alphabet)}

    def __len__(self) -> int:
        return len(self.alphabet) + 1

    def __call__(self, texts: Sequence[str], train: bool = False) -> TextBatch:
        rows = [[self.index.get(c, 0) for c in t[: self.max_length]] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        return TextBatch(ids, ids != 0)

    def options(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def save_files(self, directory: Path) -> None:
        (directory / "alphabet.txt").write_text(self.alphabet)


class CharTokenizerConfig(ComponentConfig):
    max_length: int = Field(24, ge=1)


def load_char_tokenizer(cfg: CharTokenizerConfig, *, directory: Path, **_: Any) -> CharTokenizer:
    return CharTokenizer((directory / "alphabet.txt").read_text(), cfg.max_length)


class CharBagConfig(ComponentConfig):
    dim: int = 8


class CharBag(TextEncoder):
    def __init__(self, tokenizer: CharTokenizer, dim: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.embed = nn.Embedding(len(tokenizer), dim, padding_idx=0)
        self.pooled_dim = self.local_dim = self.input_dim = dim

    def forward(self, batch: TextBatch) -> EncoderOutput:
        x = self.embed(batch.ids)
        m = batch.mask[..., None].float()
        return EncoderOutput((x * m).sum(1) / m.sum(1).clamp(min=1), x, batch.mask)


def build_char_bag(cfg: CharBagConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None,
                   **_: Any) -> CharBag:
    if tokenizer is None:
        tokenizer = CharTokenizer("".join(sorted(set("".join(train_captions or [])))))
    return CharBag(tokenizer, cfg.dim)


class CharDemoConfig(MethodConfig):
    embed_dim: int = 8
    image_encoder: Component["image_encoder"] = TINY_IMAGES
    text_encoder: Component["text_encoder"] = {"type": "char_bag"}


def register_chars(r: Registrar) -> None:
    r.add("tokenizer", "chars", load_char_tokenizer, CharTokenizerConfig)
    r.add("text_encoder", "char_bag", build_char_bag, CharBagConfig)
    r.add("method", "char_demo", lambda cfg, **ctx: assemble_method(cfg, **ctx), CharDemoConfig)


def test_a_plugin_tokenizer_reloads_from_a_model_folder(restore_registry: None, tmp_path: Path) -> None:
    assert load_plugin("chars_demo", "dist-chars", "0.1", register_chars).ok
    torch.manual_seed(0)
    method = zoo.build_method({"type": "char_demo", "text_encoder": {"type": "char_bag", "dim": 8}},
                              train_captions=CAPTIONS).eval()
    folder = save_model(method, tmp_path / "model")
    marker = json.loads((folder / "tokenizer" / "xmodalzoo_tokenizer.json").read_text())
    assert marker == {"type": "chars", "options": {"max_length": 24}}

    loaded = load_model(folder)
    assert type(loaded.tokenizer) is CharTokenizer and loaded.tokenizer.alphabet == method.tokenizer.alphabet
    assert torch.equal(loaded.embed_texts(CAPTIONS).vectors, method.embed_texts(CAPTIONS).vectors)

    discover(force=True)  # the plugin is gone: its tokenizer cannot be rebuilt, and the error says why
    # (issue 14: the method's own entry is missing too, so the error names the distribution to install)
    with pytest.raises(ModelFolderError, match="method 'char_demo' is not registered.*pip install dist-chars"):
        load_model(folder)


# --------------------------------------------------------------------- a batch module named in a recipe


class Mixer(BatchModule):
    """Refines the image embeddings of a batch (training only)."""

    def __init__(self, dim: int, warmup_steps: int) -> None:
        super().__init__(warmup_steps)
        self.mix = nn.Linear(dim, dim)
        self.calls = 0

    def forward(self, image: Any, text: Any, batch: Any) -> dict[str, Any]:
        self.calls += 1
        return {"image": PointEmbedding(F.normalize(self.mix(image.vectors), dim=-1))}


class MixerConfig(ComponentConfig):
    warmup_steps: int = Field(2, ge=0)


def register_mixer(r: Registrar) -> None:
    r.add("batch_module", "mixer", lambda cfg, *, embed_dim, **_: Mixer(embed_dim, cfg.warmup_steps), MixerConfig)


def test_a_registered_batch_module_is_built_switched_on_and_left_out_of_model_folders(
        restore_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    assert load_plugin("mixer_demo", "dist-mixer", "0.1", register_mixer).ok
    recipe = validate_recipe({
        "data": {"type": "shapes", "image_size": 32, "train_size": 16, "val_size": 8, "test_size": 8, "cache": False},
        "method": {**TINY["method"], "batch_module": {"type": "mixer", "warmup_steps": 2}},
        "train": {"epochs": 1, "batch_size": 8, "sampler": {"type": "random_images"}},
    })
    assert isinstance(recipe.method.batch_module, MixerConfig)
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.setup()
    bm = trainer.method.batch_module
    assert isinstance(bm, Mixer) and bm.warmup_steps == 2
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in bm.parameters())
    batch = next(iter(trainer.loader))
    for step, active in ((1, False), (2, True)):
        trainer.step = step
        trainer.train_step(batch)
        assert bm.active is active and bm.calls == int(active)

    folder = save_model(trainer.method, tmp_path / "model")
    assert json.loads((folder / CONFIG).read_text())["method"]["batch_module"] is None
    assert load_model(folder).batch_module is None


# ------------------------------------------------------------------------------- one shape of config


def test_sub_configs_are_models_after_validation() -> None:
    cfg = REGISTRY.get("method", "vse").validate({"image_head": {"type": "linear"}})
    parts = (cfg.image_encoder, cfg.text_encoder, cfg.image_head, cfg.text_head, cfg.similarity, cfg.loss)
    assert all(isinstance(p, BaseModel) for p in parts)
    assert cfg.image_head.type == "linear" and cfg.text_head.pooling == "gpo"
    method = zoo.build_method({**TINY["method"]}, train_captions=CAPTIONS)
    assert isinstance(method.config.text_encoder, BaseModel) and method.config.text_encoder.word_dim == 32
