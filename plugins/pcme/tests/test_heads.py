"""The PCME Gaussian head: formula against loops, shapes, unit-norm μ, free logvar, padding invariance."""
import math
from types import SimpleNamespace

import pytest
import torch

from xmodalzoo.embeddings import GaussianEmbedding, PointEmbedding
from xmodalzoo.encoders.base import EncoderOutput
from xmodalzoo.api import build_component as build
from xmodalzoo_pcme.heads import PCMEGaussianConfig

POOLED, LOCAL, WORDS, D = 6, 5, 4, 8


def encoder():
    return SimpleNamespace(pooled_dim=POOLED, local_dim=LOCAL, input_dim=WORDS)


def features(lengths, L=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    return EncoderOutput(
        pooled=torch.randn(B, POOLED, generator=g, dtype=torch.float64),
        local=torch.randn(B, L, LOCAL, generator=g, dtype=torch.float64),
        mask=mask,
        inputs=torch.randn(B, L, WORDS, generator=g, dtype=torch.float64),
    )


def head(seed=0, **cfg):
    torch.manual_seed(seed)
    return build("head", {"type": "pcme_gaussian", "d_hidden": 3, **cfg}, encoder=encoder(), embed_dim=D,
                 modality="image").double()


def attend(att, x):
    """Σ_l softmax_l(w2·tanh(W1 x_l)) x_l with explicit loops over positions."""
    scores = [sum(att.w2.weight[0, h] * torch.tanh(sum(att.w1.weight[h, f] * x[l, f] for f in range(x.shape[1])))
                  for h in range(att.w1.weight.shape[0])) for l in range(x.shape[0])]
    z = sum(torch.exp(s) for s in scores)
    return sum(torch.exp(scores[l]) / z * x[l] for l in range(x.shape[0]))


def linear(fc, x):
    return torch.stack([sum(fc.weight[o, f] * x[f] for f in range(x.shape[0])) + fc.bias[o]
                        for o in range(fc.weight.shape[0])])


def test_image_head_matches_the_formula():
    h = head(source="local")
    feats = features([5, 3])
    out = h(feats)
    assert isinstance(out, GaussianEmbedding) and out.mean.shape == out.logvar.shape == (2, D)
    for b, n in enumerate([5, 3]):
        x = feats.local[b, :n]
        g = linear(h.global_proj, feats.pooled[b])
        r = torch.sigmoid(linear(h.mu_residual, attend(h.mu_attention, x)))
        y = g + r
        y = (y - y.mean()) / torch.sqrt(y.var(unbiased=False) + h.layer_norm.eps) * h.layer_norm.weight + h.layer_norm.bias
        assert torch.allclose(out.mean[b], y / y.norm())
        lv = linear(h.sigma_local, attend(h.sigma_attention, x)) + linear(h.sigma_global, feats.pooled[b])
        assert torch.allclose(out.logvar[b], lv)


def test_mu_is_unit_norm_and_logvar_unconstrained():
    h = head()
    out = h(features([5, 2, 1], seed=1))
    assert torch.allclose(out.mean.norm(dim=-1), torch.ones(3, dtype=torch.float64))
    with torch.no_grad():
        h.sigma_local.bias.fill_(-50.0)
    assert (h(features([5, 2, 1])).logvar < -40).all()  # no sigmoid / norm squashing the σ branch
    with torch.no_grad():
        h.sigma_local.bias.fill_(50.0)
    assert (h(features([5, 2, 1])).logvar > 40).all()


@pytest.mark.parametrize("cfg", [{"source": "local"}, {"source": "inputs", "sigma_gru": True},
                                 {"source": "inputs", "sigma_gru": False}])
def test_padding_does_not_change_the_output(cfg):
    h = head(**cfg).eval()
    short = features([3, 2], L=3, seed=2)
    long = EncoderOutput(
        pooled=short.pooled,
        local=torch.cat([short.local, 100 * torch.randn(2, 4, LOCAL, dtype=torch.float64)], 1),
        mask=torch.cat([short.mask, torch.zeros(2, 4, dtype=torch.bool)], 1),
        inputs=torch.cat([short.inputs, 100 * torch.randn(2, 4, WORDS, dtype=torch.float64)], 1),
    )
    a, b = h(short), h(long)
    assert torch.allclose(a.mean, b.mean) and torch.allclose(a.logvar, b.logvar)
    # and the valid positions do matter
    changed = EncoderOutput(short.pooled, short.local + 1, short.mask, short.inputs + 1)
    assert not torch.allclose(h(changed).logvar, a.logvar)


def test_text_sigma_gru_uses_the_last_valid_output():
    h = head(source="inputs", sigma_gru=True)
    assert h.sigma_global is None and h.global_proj is not None
    feats = features([4, 2])
    out = h(feats)
    gru = h.sigma_gru.rnn
    for b, n in enumerate([4, 2]):
        # the biGRU's output at the last valid token: forward state after n steps, backward after 1 step
        seq = feats.inputs[b : b + 1, :n]
        full, _ = gru(seq)
        expected = linear(h.sigma_local, attend(h.sigma_attention, feats.inputs[b, :n])) + full[0, n - 1]
        assert torch.allclose(out.logvar[b], expected)


def test_text_pooled_is_used_as_is_when_it_has_the_embedding_size():
    enc = SimpleNamespace(pooled_dim=D, local_dim=D, input_dim=WORDS)
    h = build("head", {"type": "pcme_gaussian", "source": "inputs"}, encoder=enc, embed_dim=D, modality="text")
    assert isinstance(h.global_proj, torch.nn.Identity)
    with pytest.raises(ValueError, match="pooled size"):
        build("head", {"type": "pcme_gaussian", "project_pooled": False}, encoder=encoder(), embed_dim=D,
              modality="image")


def test_mean_only_head_and_errors():
    torch.manual_seed(0)
    h = build("head", {"type": "pcme_mean", "d_hidden": 3}, encoder=encoder(), embed_dim=D, modality="image").double()
    assert not any(n.startswith("sigma") for n, _ in h.named_parameters())
    with pytest.raises(ValueError, match="sigma_gru"):  # a σ option on the μ-only head is an error, not ignored
        build("head", {"type": "pcme_mean", "sigma_gru": True}, encoder=encoder(), embed_dim=D, modality="image")
    out = h(features([2, 5]))
    assert isinstance(out, PointEmbedding) and torch.allclose(out.vectors.norm(dim=-1), torch.ones(2, dtype=torch.float64))
    bad = features([2, 5])
    bad.mask = torch.tensor([[False, True, True, False, False], [True] * 5])
    with pytest.raises(ValueError, match="valid positions come first"):
        head(source="inputs", sigma_gru=True)(bad)
    with pytest.raises(ValueError, match="do not match mask"):
        head()(EncoderOutput(bad.pooled, bad.local[:, :3], bad.mask))
    with pytest.raises(ValueError, match="even embed_dim"):
        build("head", {"type": "pcme_gaussian", "sigma_gru": True}, encoder=encoder(), embed_dim=7, modality="text")
    assert PCMEGaussianConfig().source == "local"
    assert math.isfinite(head()(features([0, 3])).mean.sum().item())  # an item without valid positions
