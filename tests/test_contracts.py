"""Contracts between a method's parts, checked when a recipe is validated: one test per mismatch kind,
the declarations of every shipped component, and that those declarations tell the truth."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import xmodalzoo as zoo
from xmodalzoo.cli import main
from xmodalzoo.config import ComponentConfig
from xmodalzoo.embeddings import PointEmbedding, SetEmbedding
from xmodalzoo.encoders.base import EncoderOutput
from xmodalzoo.errors import ContractError, RecipeError, RegistryError
from xmodalzoo.losses.base import Loss, LossOutput
from xmodalzoo.plugins import load_plugin
from xmodalzoo.registry import REGISTRY, Registrar
from xmodalzoo.similarity.base import Similarity

VSE_SHAPES = Path(__file__).resolve().parents[1] / "recipes" / "vse_shapes.yaml"
SHAPES = {"type": "shapes", "image_size": 32, "train_size": 8, "val_size": 8, "test_size": 8, "cache": False}


def recipe(method: dict[str, Any]) -> dict[str, Any]:
    return {"data": SHAPES, "method": method}


class KConfig(ComponentConfig):
    k: int = Field(1, ge=1, description="vectors per item")


class SetOrPointHead(nn.Module):
    """k = 1: a point per item; k > 1: a set of k vectors."""

    def __init__(self, k: int, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.k, self.proj = k, nn.Linear(in_dim, embed_dim * k)

    def forward(self, feats: EncoderOutput) -> Any:
        v = F.normalize(self.proj(feats.pooled).view(len(feats.pooled), self.k, -1), dim=-1)
        return PointEmbedding(v[:, 0]) if self.k == 1 else SetEmbedding(v)


class PointNCE(Loss):
    def forward(self, image: Any, text: Any, ctx: Any) -> LossOutput:
        logits = image.vectors @ text.vectors.t()
        return LossOutput(-(logits.log_softmax(1) * ctx.positives.float()).sum() / ctx.positives.sum())


class Dot(Similarity):
    """Declares no contract: fits anything (and reads points or sets by their first vector)."""

    def forward(self, query: Any, gallery: Any) -> torch.Tensor:
        q, g = (e.vectors if e.vectors.dim() == 2 else e.vectors[:, 0] for e in (query, gallery))
        return q @ g.t()


def register_toys(r: Registrar) -> None:
    r.add("head", "k_head", lambda cfg, *, encoder, embed_dim, **_: SetOrPointHead(cfg.k, encoder.pooled_dim, embed_dim),
          KConfig, emits=lambda cfg: "set" if cfg.k > 1 else "point")
    r.add("loss", "point_nce", lambda cfg, **_: PointNCE(), accepts=["point"])
    r.add("similarity", "undeclared_dot", lambda cfg, **_: Dot())


@pytest.fixture
def toys(restore_registry: None) -> None:
    status = load_plugin("contract_toys", "dist-contract-toys", "0.1", register_toys)
    assert status.ok, status.error


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(RecipeError) as err:
        zoo.validate_recipe(data, "r.yaml")
    return err.value.messages


# ---------------------------------------------------------------------------------- one per mismatch kind


def test_head_kind_the_similarity_does_not_accept_is_rejected_by_zoo_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(VSE_SHAPES), "--set", "method.similarity.type=mil_max"]) == 2
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert out.out == "" and len(lines) == 1, out.err
    assert lines[0] == (f"error: {VSE_SHAPES}: method.image_head and method.text_head ('vse_pool') emit "
                        "point embeddings, but method.similarity 'mil_max' accepts set embeddings only")


def test_loss_that_needs_another_similarity_is_rejected() -> None:
    lines = errors_of(recipe({"type": "pcme", "similarity": {"type": "cosine"}}))
    assert lines == [
        "r.yaml: method.image_head and method.text_head ('pcme_gaussian') emit gaussian embeddings, "
        "but method.similarity 'cosine' accepts point embeddings only",
        "r.yaml: method.loss 'pcme' needs method.similarity of type match_prob, but it is 'cosine'",
    ]


def test_set_head_with_a_point_only_loss_is_rejected(toys: None) -> None:
    lines = errors_of(recipe({"type": "pvse", "loss": {"type": "point_nce"}}))
    assert lines == ["r.yaml: method.image_head and method.text_head ('pvse_pie') emit set embeddings, "
                     "but method.loss 'point_nce' accepts point embeddings only"]


def test_a_head_whose_kind_depends_on_its_options_is_judged_by_them(toys: None) -> None:
    fits = recipe({"type": "vse", "image_head": {"type": "k_head", "k": 1}, "loss": {"type": "point_nce"}})
    assert zoo.validate_recipe(fits).method.image_head.k == 1
    lines = errors_of(recipe({"type": "vse", "image_head": {"type": "k_head", "k": 3}, "loss": {"type": "point_nce"}}))
    assert lines == [
        "r.yaml: method.image_head ('k_head') emits set embeddings, but method.similarity 'cosine' accepts point "
        "embeddings only",
        "r.yaml: method.image_head ('k_head') emits set embeddings, but method.loss 'point_nce' accepts point "
        "embeddings only",
    ]


def test_a_part_that_declares_nothing_fits_anything(toys: None) -> None:
    r = zoo.validate_recipe(recipe({"type": "pvse", "similarity": {"type": "undeclared_dot"}}))
    assert r.method.similarity.type == "undeclared_dot"


def test_assembling_a_misfit_method_in_python_fails_before_building_anything() -> None:
    cfg = {"type": "vse", "image_encoder": {"type": "timm", "model": "no_such_model_is_built"},
           "similarity": {"type": "mil_max"}}
    with pytest.raises(ContractError, match="method.similarity 'mil_max' accepts set embeddings only"):
        zoo.build_method(cfg, train_captions=["a red circle"])


def test_misplaced_or_empty_contract_keywords_are_registration_errors() -> None:
    r = Registrar("p", "dist-p")
    with pytest.raises(RegistryError, match="emits= is for head components"):
        r.add("loss", "l", lambda cfg: None, emits="point")
    with pytest.raises(RegistryError, match="similarities= is for loss components"):
        r.add("similarity", "s", lambda cfg: None, similarities=["cosine"])
    with pytest.raises(RegistryError, match="non-empty list"):
        r.add("similarity", "s", lambda cfg: None, accepts=[])
    with pytest.raises(RegistryError, match="non-empty list"):
        r.add("similarity", "s", lambda cfg: None, accepts="point")
    assert r.staged == []


# ------------------------------------------------------------------- the shipped components' declarations

#: the core and every plugin shipped under plugins/ (DivE and HREM included once they register parts)
FIRST_PARTY = {"xmodalzoo"} | {p.name for p in (Path(__file__).resolve().parents[1] / "plugins").iterdir() if p.is_dir()}
#: losses that read nothing but the similarity's scores: they fit every embedding kind
SCORE_ONLY_LOSSES = {"triplet"}


def shipped(kind: str) -> list[Any]:
    return [e for e in REGISTRY.list(kind) if e.plugin in FIRST_PARTY]


def test_every_shipped_head_similarity_and_loss_declares_its_contract() -> None:
    assert {e.name for e in shipped("head")} >= {"linear", "vse_pool", "pcme_gaussian", "pvse_pie"}
    assert [e.name for e in shipped("head") if "emits" not in e.contract] == []
    assert [e.name for e in shipped("similarity") if "accepts" not in e.contract] == []
    assert [e.name for e in shipped("loss") if "accepts" not in e.contract and e.name not in SCORE_ONLY_LOSSES] == []


#: feature and embedding size of the head check: a multiple of every shipped head's default attention heads
DIM = 32


def fake_features(n: int = 3, length: int = 4, dim: int = DIM) -> EncoderOutput:
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[0, -1] = False
    return EncoderOutput(torch.randn(n, dim, generator=g), torch.randn(n, length, dim, generator=g), mask,
                         torch.randn(n, length, dim, generator=g))


@pytest.mark.parametrize("modality", ["image", "text"])
def test_shipped_heads_emit_the_kind_they_declare(modality: str) -> None:
    encoder = SimpleNamespace(pooled_dim=DIM, local_dim=DIM, input_dim=DIM)
    for entry in shipped("head"):
        head = entry.build({}, encoder=encoder, embed_dim=DIM, modality=modality).eval()
        with torch.no_grad():
            emb = head(fake_features())
        assert emb.kind == entry.contract["emits"], entry.name


def test_shipped_similarities_read_what_they_declare() -> None:
    for entry in shipped("similarity"):
        sim = entry.build({})
        kinds = {cls.kind for cls in sim.accepts}
        assert set(entry.contract["accepts"]) <= kinds, entry.name
