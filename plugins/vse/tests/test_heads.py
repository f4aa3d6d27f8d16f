"""vse_pool: masked mean/max against per-item loops, GPO wiring, padding-free batch norm, config errors."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.encoders.base import EncoderOutput
from xmodalzoo.api import build_component as build
from xmodalzoo_vse.heads import VSEPoolHead

FAKE = SimpleNamespace(pooled_dim=5, local_dim=6, input_dim=3)


def head(**cfg: object) -> VSEPoolHead:
    return build("head", {"type": "vse_pool", **cfg}, encoder=FAKE, embed_dim=4, modality="image")


def features(seed: int = 0) -> EncoderOutput:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
    local = torch.randn(3, 5, FAKE.local_dim, generator=gen)
    inputs = torch.randn(3, 5, FAKE.input_dim, generator=gen)
    return EncoderOutput(pooled=torch.randn(3, FAKE.pooled_dim, generator=gen), local=local, mask=mask, inputs=inputs)


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("source", ["local", "inputs"])
def test_mean_and_max_match_a_manual_masked_loop(pooling: str, source: str) -> None:
    torch.manual_seed(0)
    h = head(pooling=pooling, source=source)
    feats = features()
    got = h(feats)
    assert isinstance(got, PointEmbedding) and got.vectors.shape == (3, 4)
    x = feats.local if source == "local" else feats.inputs
    for b in range(3):
        rows = [h.proj(x[b, k]) for k in range(5) if feats.mask[b, k]]
        stacked = torch.stack(rows)
        pooled = stacked.mean(0) if pooling == "mean" else stacked.max(0).values
        assert torch.allclose(got.vectors[b], F.normalize(pooled, dim=0), atol=1e-6)


def test_gpo_head_pools_projected_fragments_with_its_gpo() -> None:
    torch.manual_seed(0)
    h = head(pooling="gpo", normalize=False)
    feats = features()
    projected = h.proj(feats.local)
    assert torch.allclose(h(feats).vectors, h.gpo(projected, feats.mask), atol=1e-6)


def test_without_projection_pools_raw_fragments_and_checks_dims() -> None:
    h = build("head", {"type": "vse_pool", "project": False, "pooling": "max"}, encoder=FAKE, embed_dim=6, modality="text")
    feats = features()
    want = torch.stack([feats.local[b][feats.mask[b]].max(0).values for b in range(3)])
    assert torch.allclose(h(feats).vectors, F.normalize(want, dim=-1))
    with pytest.raises(ValueError, match="fragment dim == embed_dim; got 6 != 4"):
        head(project=False)


def test_mlp_residual_ignores_padding_in_batch_norm() -> None:
    torch.manual_seed(0)
    h = head(mlp=True, pooling="gpo").train()
    feats = features()
    wide = EncoderOutput(
        pooled=feats.pooled,
        local=torch.cat([feats.local, torch.full((3, 4, FAKE.local_dim), 50.0)], 1),
        mask=torch.cat([feats.mask, torch.zeros(3, 4, dtype=torch.bool)], 1),
    )
    assert torch.allclose(h(feats).vectors, h(wide).vectors, atol=1e-6)
    h(feats).vectors.sum().backward()
    assert h.mlp.net[0].weight.grad is not None and h.mlp.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["mean", "max", "gpo"])
def test_item_without_valid_fragments_gives_zero_not_nan(pooling: str) -> None:
    h = head(pooling=pooling)
    feats = features()
    feats.mask[2] = False
    v = h(feats).vectors
    assert torch.isfinite(v).all() and torch.all(v[2] == 0)


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(Exception, match="pooling"):
        head(pooling="attention")
