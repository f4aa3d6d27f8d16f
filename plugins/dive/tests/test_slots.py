"""The set-prediction module against references written from the formulas (loops, float64)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo_dive.positional import sine_position_code
from xmodalzoo_dive.slots import RENORM_EPS, SetPredictionModule, competition_weights


def test_position_code_matches_formula() -> None:
    lengths = torch.tensor([5, 3])
    code = sine_position_code(lengths, 5, 6).double()
    for b, n in enumerate(lengths.tolist()):
        for p in range(1, 6):
            theta = p / (n + 1e-6) * 2 * math.pi
            for c in range(6):
                freq = 10000 ** (2 * (c // 2) / 6)
                want = math.sin(theta / freq) if c % 2 == 0 else math.cos(theta / freq)
                assert abs(code[b, p - 1, c].item() - want) < 1e-5
    # positions 1..n span (0, 2π]: the last real position of a row is at θ ≈ 2π
    assert abs(code[0, 4, 0].item() - math.sin(2 * math.pi)) < 1e-5 and abs(code[0, 4, 1].item() - 1) < 1e-5


def test_weights_sum_to_one_over_slots_before_renormalisation() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 6, generator=gen, dtype=torch.float64)  # (B, H, K, L)
    valid = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    share = logits.softmax(dim=2)  # what competition_weights renormalises
    torch.testing.assert_close(share.sum(2), torch.ones(2, 3, 6, dtype=torch.float64))
    for padding in ("official", "exclude"):
        w = competition_weights(logits, valid, padding)
        for b in range(2):
            for h in range(3):
                # the reference, from the formula: per input a softmax over the slots, then per slot / (Σ_l + 1e-7)
                ref = torch.zeros(4, 6, dtype=torch.float64)
                for l in range(6):
                    if valid[b, l]:
                        ex = [math.exp(logits[b, h, k, l].item()) for k in range(4)]
                        ref[:, l] = torch.tensor([e / sum(ex) for e in ex], dtype=torch.float64)
                    elif padding == "official":
                        ref[:, l] = 1 / 4
                for k in range(4):
                    ref[k] /= ref[k].sum() + RENORM_EPS
                torch.testing.assert_close(w[b, h], ref)
        # after the renormalisation every slot's weights sum to (almost) 1 over the inputs
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4, dtype=torch.float64), atol=1e-6, rtol=0)
    # official: a padded input gets 1/K of every slot before renormalisation; exclude: nothing
    assert (competition_weights(logits, valid, "exclude")[0, :, :, 4:] == 0).all()
    assert (competition_weights(logits, valid, "official")[0, :, :, 4:] > 0).all()


def _module(**kw: object) -> SetPredictionModule:
    torch.manual_seed(0)
    args = dict(iterations=3, share_weights=True, heads=2, head_dim=3, ff_mult=2.0, dropout=0.0,
                update="residual", slot_init="learned")
    args.update(kw)
    return SetPredictionModule(3, 4, 5, **args).double().eval()  # type: ignore[arg-type]


def _layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _reference(spm: SetPredictionModule, x: torch.Tensor, valid: torch.Tensor, padding: str,
               code: torch.Tensor | None) -> torch.Tensor:
    """The module's output for one item x (L, I), written out slot by slot, head by head."""
    k, heads = spm.num_slots, spm.blocks[0].attention.heads
    dh = spm.blocks[0].attention.head_dim
    slots = [spm.slots[i].clone() for i in range(k)]
    for t in range(spm.iterations):
        blk = spm.blocks[0 if spm.share_weights else t]
        att = blk.attention
        xs = [_layer_norm(x[j], blk.norm_inputs) for j in range(len(x))]
        keys = [att.to_k.weight @ (xs[j] + (code[j] if code is not None else 0)) for j in range(len(x))]
        vals = [att.to_v.weight @ xs[j] for j in range(len(x))]
        qs = [att.to_q.weight @ _layer_norm(s, blk.norm_slots) for s in slots]
        outs = [torch.zeros(heads * dh, dtype=x.dtype) for _ in range(k)]
        for h in range(heads):
            hs = slice(h * dh, (h + 1) * dh)
            w = torch.zeros(k, len(x), dtype=x.dtype)
            for j in range(len(x)):
                logits = [float(qs[i][hs] @ keys[j][hs]) / math.sqrt(dh) for i in range(k)]
                if valid[j]:
                    z = sum(math.exp(v) for v in logits)
                    w[:, j] = torch.tensor([math.exp(v) / z for v in logits], dtype=x.dtype)
                elif padding == "official":
                    w[:, j] = 1 / k
            for i in range(k):
                w[i] = w[i] / (w[i].sum() + RENORM_EPS)
                outs[i][hs] = sum(w[i, j] * vals[j][hs] for j in range(len(x)))
        new = []
        for i in range(k):
            s = slots[i] + att.to_out[0](outs[i])
            hidden = F.gelu(blk.ff[0](_layer_norm(s, blk.norm_ff)))  # exact (erf) GELU
            new.append(s + blk.ff[3](hidden))
        slots = new
    return torch.stack([_layer_norm(s, spm.final_norm) for s in slots])


@pytest.mark.parametrize("padding", ["official", "exclude"])
@pytest.mark.parametrize("share", [True, False])
def test_set_prediction_matches_loop_reference(padding: str, share: bool) -> None:
    spm = _module(share_weights=share)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    valid = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]).bool()
    code = sine_position_code(valid.sum(1), 6, 5).double()
    with torch.no_grad():
        out, weights = spm(x, valid, padding, code)  # type: ignore[arg-type]
        for b in range(2):
            torch.testing.assert_close(out[b], _reference(spm, x[b], valid[b], padding, code[b]))
    assert weights.shape == (2, 2, 3, 6)
    # shared: one block of parameters applied T times; unshared: T blocks
    assert len(spm.blocks) == (1 if share else 3)


def test_padding_modes_on_perturbed_padding() -> None:
    spm = _module()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 6, 5, generator=gen, dtype=torch.float64)
    valid = torch.tensor([[1, 1, 1, 1, 0, 0]]).bool()
    perturbed = x.clone()
    perturbed[:, 4:] += 3 * torch.randn(1, 2, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for padding, changes in (("official", True), ("exclude", False)):
            a, _ = spm(x, valid, padding)  # type: ignore[arg-type]
            b, _ = spm(perturbed, valid, padding)  # type: ignore[arg-type]
            assert (not torch.allclose(a, b, atol=1e-6)) == changes, padding
        # exclude: dropping the padded columns altogether gives the same slots too
        a, _ = spm(x, valid, "exclude")
        c, _ = spm(x[:, :4], valid[:, :4], "exclude")
        torch.testing.assert_close(a, c)


def test_paper_variant_gaussian_slots_and_gru() -> None:
    spm = SetPredictionModule(3, 4, 5, iterations=2, share_weights=True, heads=1, head_dim=4, ff_mult=1.0,
                              dropout=0.0, update="gru", slot_init="gaussian")
    x = torch.randn(2, 6, 5)
    valid = torch.ones(2, 6, dtype=torch.bool)
    spm.train()
    a, _ = spm(x, valid, "official")
    b, _ = spm(x, valid, "official")
    assert not torch.allclose(a, b)  # fresh slots per call in training
    spm.eval()
    with torch.no_grad():
        c, _ = spm(x, valid, "official")
        d, _ = spm(x[1:], valid[1:], "official")
    torch.testing.assert_close(c[1:], d)  # eval: one seeded draw, the same for every item and batch
    assert spm.blocks[0].gru is not None and not hasattr(spm, "slots")
    assert {n for n, _ in spm.named_parameters()} >= {"slot_mu", "slot_log_sigma"}
