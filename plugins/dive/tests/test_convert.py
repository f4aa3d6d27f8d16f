"""zoo convert --from dive: a fake checkpoint in the released code's layout (weight-shared aggregation
layers saved once per iteration, |V| + 1 embedding rows, args Namespace) lands tensor by tensor, the
weight-tied copies are checked and dropped, and the converted image set equals the released
computation written out with plain tensor ops."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from convert_fakes import gru, linear, norm

D, IMG, WORD, SLOTS, DEPTH, HEAD_DIM = 8, 10, 6, 3, 2, 2
WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "man", "surfs"]


def _spm(sd: dict[str, torch.Tensor], p: str, inp: int) -> None:
    """A weight-shared AggregationBlock: layer 0's modules saved again under every later layer."""
    sd[f"{p}spm.agg_block.latents"] = torch.randn(SLOTS, D)
    norm(sd, f"{p}spm.residual_norm", D)
    layer: dict[str, torch.Tensor] = {}
    norm(layer, "0.norm", D)
    norm(layer, "0.norm_context", inp)
    for name, fin in (("to_q", D), ("to_k", inp), ("to_v", inp)):
        linear(layer, f"0.fn.{name}", 4 * HEAD_DIM, fin, bias=False)
    linear(layer, "0.fn.to_out.0", D, 4 * HEAD_DIM)
    norm(layer, "2.norm", D)
    linear(layer, "2.fn.net.0", 4 * D, D)
    linear(layer, "2.fn.net.3", D, 4 * D)
    for i in range(DEPTH):
        sd.update({f"{p}spm.agg_block.layers.{i}.{k}": v for k, v in layer.items()})
    norm(sd, f"{p}spm.agg_block.last_layer.0", D)


def fake_dive(folder: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    sd: dict[str, torch.Tensor] = {}
    linear(sd, "img_enc.fc", D, IMG)
    linear(sd, "img_enc.mlp.fc1", D // 2, D)
    norm(sd, "img_enc.mlp.bn.bn", D // 2, batch=True)
    linear(sd, "img_enc.mlp.fc2", D, D // 2)
    _spm(sd, "img_enc.", D)
    sd["txt_enc.embed.weight"] = torch.randn(len(WORDS) + 1, WORD)  # |V| + 1 rows
    gru(sd, "txt_enc.rnn", WORD, D)
    _spm(sd, "txt_enc.", WORD)
    torch.save({"args": argparse.Namespace(spm_weight_sharing=True, embed_size=D), "epoch": 79, "best_score": 524.6,
                "model": sd}, folder / "dive.pth")
    (folder / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(WORDS)}))
    return sd


def _reference_image_set(x: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """(K, D) elements of one image's (R, IMG) regions, by the released code's formulas (eval mode)."""
    p = x @ t["img_enc.fc.weight"].T + t["img_enc.fc.bias"]
    h = p @ t["img_enc.mlp.fc1.weight"].T + t["img_enc.mlp.fc1.bias"]
    bn = "img_enc.mlp.bn.bn"
    h = (h - t[f"{bn}.running_mean"]) / torch.sqrt(t[f"{bn}.running_var"] + 1e-5) * t[f"{bn}.weight"] + t[f"{bn}.bias"]
    f = p + F.relu(h) @ t["img_enc.mlp.fc2.weight"].T + t["img_enc.mlp.fc2.bias"]  # (R, D)
    L = "img_enc.spm.agg_block.layers.0."
    ln = lambda z, n: F.layer_norm(z, (z.shape[-1],), t[f"{n}.weight"], t[f"{n}.bias"])  # noqa: E731
    slots = t["img_enc.spm.agg_block.latents"]
    ctx = ln(f, f"{L}0.norm_context")
    k, v = ctx @ t[f"{L}0.fn.to_k.weight"].T, ctx @ t[f"{L}0.fn.to_v.weight"].T
    for _ in range(DEPTH):
        q = ln(slots, f"{L}0.norm") @ t[f"{L}0.fn.to_q.weight"].T
        out = []
        for hd in range(4):
            s = slice(hd * HEAD_DIM, (hd + 1) * HEAD_DIM)
            w = (q[:, s] @ k[:, s].T * HEAD_DIM ** -0.5).softmax(dim=0)  # competition over the slots
            w = w / (w.sum(dim=1, keepdim=True) + 1e-7)  # renormalised over the inputs
            out.append(w @ v[:, s])
        slots = slots + torch.cat(out, -1) @ t[f"{L}0.fn.to_out.0.weight"].T + t[f"{L}0.fn.to_out.0.bias"]
        hid = F.gelu(ln(slots, f"{L}2.norm") @ t[f"{L}2.fn.net.0.weight"].T + t[f"{L}2.fn.net.0.bias"])
        slots = slots + hid @ t[f"{L}2.fn.net.3.weight"].T + t[f"{L}2.fn.net.3.bias"]
    slots = ln(slots, "img_enc.spm.agg_block.last_layer.0")
    glob = ln(f.max(0).values, "img_enc.spm.residual_norm")
    return F.normalize(glob[None] + slots, dim=-1)


def test_dive_checkpoint_lands_and_image_set_matches_the_released_computation(tmp_path: Path) -> None:
    from xmodalzoo.convert import convert_checkpoint
    from xmodalzoo.hub import load_model

    sd = fake_dive(tmp_path)
    report = convert_checkpoint("dive", tmp_path / "dive.pth", tmp_path / "model", vocab=tmp_path / "vocab.json")
    model = load_model(tmp_path / "model")
    ours = model.state_dict()
    assert torch.equal(ours["text_encoder.embed.weight"], sd["txt_enc.embed.weight"][: len(WORDS)])
    assert "rows 7..7 dropped" in report.mapped["text_encoder.embed.weight"]["note"]
    assert torch.equal(ours["image_encoder.mlp.1.running_var"], sd["img_enc.mlp.bn.bn.running_var"])
    for side, head in (("img_enc.", "image_head."), ("txt_enc.", "text_head.")):
        a = f"{side}spm.agg_block."
        assert torch.equal(ours[f"{head}spm.slots"], sd[f"{a}latents"])
        assert torch.equal(ours[f"{head}spm.blocks.0.attention.to_k.weight"], sd[f"{a}layers.0.0.fn.to_k.weight"])
        assert torch.equal(ours[f"{head}spm.blocks.0.ff.3.bias"], sd[f"{a}layers.0.2.fn.net.3.bias"])
        assert torch.equal(ours[f"{head}spm.blocks.0.norm_inputs.weight"], sd[f"{a}layers.0.0.norm_context.weight"])
        assert torch.equal(ours[f"{head}spm.final_norm.bias"], sd[f"{a}last_layer.0.bias"])
        assert torch.equal(ours[f"{head}global_norm.weight"], sd[f"{side}spm.residual_norm.weight"])
        tied = [k for k, r in report.dropped.items() if k.startswith(f"model['{a}layers.1.")]
        assert len(tied) == 15 and all("weight-shared iteration" in report.dropped[k] for k in tied)
    assert len(report.mapped) == len(ours)
    torch.manual_seed(1)
    x = torch.randn(2, 4, IMG)
    with torch.no_grad():
        sets = model.image_head(model.image_encoder(x)).vectors
    t = {k: v.double() for k, v in sd.items()}
    for b in range(2):
        assert torch.allclose(sets[b].double(), _reference_image_set(x[b].double(), t), atol=1e-5)


def test_a_weight_tied_copy_that_differs_is_refused(tmp_path: Path) -> None:
    from xmodalzoo.convert import convert_checkpoint
    from xmodalzoo.errors import CheckpointError

    sd = fake_dive(tmp_path)
    sd["img_enc.spm.agg_block.layers.1.0.fn.to_q.weight"] = sd["img_enc.spm.agg_block.layers.1.0.fn.to_q.weight"] + 1
    torch.save({"args": argparse.Namespace(spm_weight_sharing=True), "model": sd}, tmp_path / "dive.pth")
    with pytest.raises(CheckpointError, match="should be a weight-tied copy"):
        convert_checkpoint("dive", tmp_path / "dive.pth", tmp_path / "model", vocab=tmp_path / "vocab.json")
