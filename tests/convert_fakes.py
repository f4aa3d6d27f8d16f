"""Helpers of the converter tests: random tensors laid out like the official modules (tiny sizes),
and the reference formulas those tests compare the converted models with."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: sizes and vocabulary of the fake VSE∞ checkpoint
VSE_D, IMG, WORD, PE, GH = 8, 10, 6, 4, 3
VSE_WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "runs"]


def linear(sd: dict[str, torch.Tensor], name: str, out: int, inp: int, bias: bool = True,
           dtype: torch.dtype = torch.float32) -> None:
    """``name.weight`` (out, inp) and ``name.bias`` (out,) as an official nn.Linear saves them."""
    sd[f"{name}.weight"] = torch.randn(out, inp).to(dtype)
    if bias:
        sd[f"{name}.bias"] = torch.randn(out).to(dtype)


def norm(sd: dict[str, torch.Tensor], name: str, dim: int, batch: bool = False,
         dtype: torch.dtype = torch.float32) -> None:
    """A LayerNorm (or, with ``batch``, a BatchNorm1d with running statistics)."""
    sd[f"{name}.weight"] = (torch.rand(dim) + 0.5).to(dtype)
    sd[f"{name}.bias"] = torch.randn(dim).to(dtype)
    if batch:
        sd[f"{name}.running_mean"] = torch.randn(dim)
        sd[f"{name}.running_var"] = torch.rand(dim) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(7)


def gru(sd: dict[str, torch.Tensor], name: str, inp: int, hid: int, dtype: torch.dtype = torch.float32) -> None:
    """A one-layer bidirectional nn.GRU's parameters."""
    for sfx in ("", "_reverse"):
        sd[f"{name}.weight_ih_l0{sfx}"] = torch.randn(3 * hid, inp).to(dtype)
        sd[f"{name}.weight_hh_l0{sfx}"] = torch.randn(3 * hid, hid).to(dtype)
        sd[f"{name}.bias_ih_l0{sfx}"] = torch.randn(3 * hid).to(dtype)
        sd[f"{name}.bias_hh_l0{sfx}"] = torch.randn(3 * hid).to(dtype)


def transformer_layer(sd: dict[str, torch.Tensor], name: str, dim: int, ff: int) -> None:
    """An nn.TransformerEncoderLayer's parameters (self_attn, linear1/2, norm1/2)."""
    linear(sd, f"{name}.self_attn.in_proj", 3 * dim, dim)
    sd[f"{name}.self_attn.in_proj_weight"] = sd.pop(f"{name}.self_attn.in_proj.weight")
    sd[f"{name}.self_attn.in_proj_bias"] = sd.pop(f"{name}.self_attn.in_proj.bias")
    linear(sd, f"{name}.self_attn.out_proj", dim, dim)
    linear(sd, f"{name}.linear1", ff, dim)
    linear(sd, f"{name}.linear2", dim, ff)
    norm(sd, f"{name}.norm1", dim)
    norm(sd, f"{name}.norm2", dim)


def vse_mlp(sd: dict[str, torch.Tensor], name: str, inp: int, hid: int, out: int) -> None:
    """VSE∞ / HREM's two-layer MLP: ``layers.{0,1}`` and ``bns.{0,1}`` (bns.1 unused by its forward)."""
    linear(sd, f"{name}.layers.0", hid, inp)
    linear(sd, f"{name}.layers.1", out, hid)
    norm(sd, f"{name}.bns.0", hid, batch=True)
    norm(sd, f"{name}.bns.1", out, batch=True)


def region_projection(x: torch.Tensor, t: dict[str, torch.Tensor], fc: str, l0: str, bn: str, l1: str,
                      mlp_reads_projection: bool = False) -> torch.Tensor:
    """fc(x) + Linear(ReLU(BN_eval(Linear(z)))) with z = x (VSE∞, HREM) or fc(x) (DivE), (B, R, D)."""
    p = x @ t[f"{fc}.weight"].T + t[f"{fc}.bias"]
    z = p if mlp_reads_projection else x
    h = z @ t[f"{l0}.weight"].T + t[f"{l0}.bias"]
    h = (h - t[f"{bn}.running_mean"]) / torch.sqrt(t[f"{bn}.running_var"] + 1e-5) * t[f"{bn}.weight"] + t[f"{bn}.bias"]
    return p + F.relu(h) @ t[f"{l1}.weight"].T + t[f"{l1}.bias"]


def save_official(path, weights, **entries) -> None:  # type: ignore[no-untyped-def]
    """torch.save of ``{'model': weights, **entries}`` (what the official training scripts write)."""
    torch.save({"model": weights, **entries}, path)


def fake_vse_infinity(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``folder/vse.pth`` in the VSE∞ layout (BiGRU text) and its ``coco_precomp_vocab.json``; returns the
    image and text state dicts (without ``module.``)."""
    torch.manual_seed(0)
    img: dict[str, torch.Tensor] = {}
    txt: dict[str, torch.Tensor] = {}
    linear(img, "fc", VSE_D, IMG)
    vse_mlp(img, "mlp", IMG, VSE_D // 2, VSE_D)
    txt["embed.weight"] = torch.randn(len(VSE_WORDS), WORD)
    gru(txt, "rnn", WORD, VSE_D)
    for sd in (img, txt):
        gru(sd, "gpool.gru", PE, GH)
        linear(sd, "gpool.linear", 1, GH, bias=False)
    torch.save({
        "model": [{f"module.{k}": v for k, v in img.items()}, {f"module.{k}": v for k, v in txt.items()}],
        "opt": argparse.Namespace(embed_size=VSE_D, precomp_enc_type="backbone", vocab_path="vocab"),
        "epoch": 24, "best_rsum": np.float64(520.8), "Eiters": 100,
    }, folder / "vse.pth")
    (folder / "coco_precomp_vocab.json").write_text(json.dumps(
        {"word2idx": {w: i for i, w in enumerate(VSE_WORDS)}, "idx2word": dict(enumerate(VSE_WORDS)), "idx": len(VSE_WORDS)}))
    return img, txt
