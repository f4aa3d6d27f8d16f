"""PIE heads against per-item, per-head loops; masking; the K = 1 single-vector path; config errors."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import PointEmbedding, SetEmbedding
from xmodalzoo.encoders.base import EncoderOutput
from xmodalzoo.api import build_component as build
from xmodalzoo_pvse.heads import PIEHead

FAKE = SimpleNamespace(pooled_dim=5, local_dim=6, input_dim=4)
MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)


def head(kind: str = "pvse_pie", modality: str = "image", embed_dim: int = 3, **cfg: object) -> PIEHead:
    return build("head", {"type": kind, **cfg}, encoder=FAKE, embed_dim=embed_dim, modality=modality)


def features(seed: int = 0, mask: torch.Tensor = MASK) -> EncoderOutput:
    gen = torch.Generator().manual_seed(seed)
    b, length = mask.shape
    return EncoderOutput(
        pooled=torch.randn(b, FAKE.pooled_dim, generator=gen),
        local=torch.randn(b, length, FAKE.local_dim, generator=gen),
        mask=mask,
        inputs=torch.randn(b, length, FAKE.input_dim, generator=gen),
    )


def reference(h: PIEHead, feats: EncoderOutput, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings (N, K, D), attention (N, K, L), normalised residuals: explicit loops over items, heads, positions."""
    w1, w2 = h.attention.w_1.weight, h.attention.w_2.weight
    n, length, _ = x.shape
    k = w2.shape[0]
    vecs, attns, resids = [], [], []
    for i in range(n):
        item_v, item_a, item_r = [], [], []
        for head_k in range(k):
            valid = [p for p in range(length) if feats.mask[i, p]]
            scores = {p: torch.dot(w2[head_k], torch.tanh(w1 @ x[i, p])) for p in valid}
            z = sum(torch.exp(s) for s in scores.values())
            weights = torch.stack([torch.exp(scores[p]) / z if p in scores else torch.zeros(()) for p in range(length)])
            attended = sum(weights[p] * x[i, p] for p in range(length))
            r = torch.sigmoid(h.fc.weight @ attended + h.fc.bias)
            g = h.global_fc.weight @ feats.pooled[i] + h.global_fc.bias
            y = g + r
            ln = (y - y.mean()) / torch.sqrt(y.var(unbiased=False) + h.layer_norm.eps)
            ln = ln * h.layer_norm.weight + h.layer_norm.bias
            item_v.append(ln / ln.norm())
            item_a.append(weights)
            item_r.append(r / r.norm())
        vecs.append(torch.stack(item_v))
        attns.append(torch.stack(item_a))
        resids.append(torch.stack(item_r))
    return torch.stack(vecs), torch.stack(attns), torch.stack(resids)


@pytest.mark.parametrize("modality,source,attended", [
    ("image", "auto", "local"), ("text", "auto", "inputs"), ("text", "local", "local"), ("image", "inputs", "inputs"),
])
def test_pie_head_matches_a_loop_over_items_and_heads(modality: str, source: str, attended: str) -> None:
    torch.manual_seed(0)
    h = head(modality=modality, source=source, num_heads=3)
    for p in h.layer_norm.parameters():  # non-trivial affine so the reference checks it
        torch.nn.init.normal_(p)
    feats = features()
    out = h(feats)
    assert isinstance(out, SetEmbedding) and out.vectors.shape == (3, 3, 3)
    want_v, want_a, want_r = reference(h, feats, getattr(feats, attended))
    assert torch.allclose(out.vectors, want_v, atol=1e-5)
    assert torch.allclose(out.aux["attention"], want_a, atol=1e-6)
    assert torch.allclose(out.aux["residuals"], want_r, atol=1e-6)
    assert torch.allclose(out.vectors.norm(dim=-1), torch.ones(3, 3), atol=1e-6)


def test_masked_positions_get_zero_weight_and_padding_values_do_not_matter() -> None:
    torch.manual_seed(0)
    h = head(num_heads=2)
    feats = features()
    out = h(feats)
    attn = out.aux["attention"]
    assert torch.all(attn.masked_select(~MASK[:, None, :].expand_as(attn)) == 0)
    assert torch.allclose(attn.sum(-1), torch.ones(3, 2), atol=1e-6)
    garbage = feats.local.clone()
    garbage[~MASK] = 1e4 * torch.randn(int((~MASK).sum()), FAKE.local_dim)
    out2 = h(EncoderOutput(feats.pooled, garbage, MASK, feats.inputs))
    assert torch.equal(out.vectors, out2.vectors)


def test_item_without_valid_positions_gets_zero_attention_not_nan() -> None:
    torch.manual_seed(0)
    mask = MASK.clone()
    mask[1] = False
    out = head()(features(mask=mask))
    assert torch.isfinite(out.vectors).all()
    assert torch.all(out.aux["attention"][1] == 0)


def test_gradients_reach_every_parameter_and_match_the_loop() -> None:
    torch.manual_seed(0)
    h = head(num_heads=2)
    feats = features()
    weights = torch.randn(3, 2, 3)
    (h(feats).vectors * weights).sum().backward()
    got = {n: p.grad.clone() for n, p in h.named_parameters()}
    h.zero_grad()
    (reference(h, feats, feats.local)[0] * weights).sum().backward()
    for name, p in h.named_parameters():
        assert got[name].abs().sum() > 0, name
        assert torch.allclose(got[name], p.grad, atol=1e-5), name


def test_k1_set_equals_the_single_vector_path_bit_for_bit() -> None:
    torch.manual_seed(0)
    one = head(num_heads=1, hidden_dim=4)
    point = head("pie_point", hidden_dim=4)
    assert set(one.state_dict()) == set(point.state_dict())
    point.load_state_dict(one.state_dict())
    feats = features()
    s, p = one(feats), point(feats)
    assert isinstance(p, PointEmbedding) and isinstance(s, SetEmbedding) and s.set_size == 1
    assert torch.equal(s.vectors[:, 0], p.vectors)


def test_hidden_dim_defaults_to_half_the_attended_size() -> None:
    assert head().attention.w_1.weight.shape == (FAKE.local_dim // 2, FAKE.local_dim)
    assert head(modality="text").attention.w_1.weight.shape == (FAKE.input_dim // 2, FAKE.input_dim)
    assert head(hidden_dim=7).attention.w_2.weight.shape == (2, 7)
    assert head().attention.w_1.bias is None and head().attention.w_2.bias is None


def test_without_global_projection_the_pooled_feature_is_used_as_is() -> None:
    torch.manual_seed(0)
    h = head(modality="text", embed_dim=FAKE.pooled_dim, project_global=False, num_heads=1)
    feats = features()
    r = torch.sigmoid(h.fc(feats.inputs[:, 2]))  # item 2 has one valid position (2); items 0, 1 differ
    want = F.normalize(h.layer_norm(feats.pooled[2] + r[2]), dim=-1)
    assert torch.allclose(h(feats).vectors[2, 0], want, atol=1e-6)
    with pytest.raises(ValueError, match="pooled_dim == embed_dim; got 5 != 3"):
        head(project_global=False)


def test_bad_config_and_inputs_fail_clearly() -> None:
    with pytest.raises(Exception, match="num_heads"):
        head(num_heads=0)
    with pytest.raises(ValueError, match="modality must be 'image' or 'text'"):
        head(modality="audio")
    feats = features()
    with pytest.raises(ValueError, match="do not match the mask"):
        head()(EncoderOutput(feats.pooled, feats.local, MASK[:, :4], feats.inputs))


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    h = head(dropout=0.5)
    feats = features()
    h.eval()
    assert torch.equal(h(feats).vectors, h(feats).vectors)
    h.train()
    assert not torch.equal(h(feats).vectors, h(feats).vectors)
    assert math.isclose(float(h.dropout.p), 0.5)
