"""zoo convert --from hrem: a fake HREM checkpoint (``[img_sd, txt_sd]``, a BertModel under ``bert.``
with its position-id buffer, an argparse Namespace opt) lands tensor by tensor, and the converted image
embedding equals the official computation written out with plain tensor ops (region FC_MLP, one
post-LN transformer layer, 0.8·MaxK-2 + 0.2·mean, L2 norm)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from convert_fakes import linear, region_projection, transformer_layer, vse_mlp

D, IMG, HEADS, FF = 8, 10, 2, 12


def _encoder_layer(x: torch.Tensor, t: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    """nn.TransformerEncoderLayer (post-LN, ReLU, eval) on one item's (L, D) fragments, by the formula."""
    q, k, v = (x @ t[f"{p}self_attn.in_proj_weight"].T + t[f"{p}self_attn.in_proj_bias"]).chunk(3, dim=-1)
    dh = D // HEADS
    heads = []
    for h in range(HEADS):
        s = slice(h * dh, (h + 1) * dh)
        att = (q[:, s] @ k[:, s].T / dh ** 0.5).softmax(-1)
        heads.append(att @ v[:, s])
    a = torch.cat(heads, -1) @ t[f"{p}self_attn.out_proj.weight"].T + t[f"{p}self_attn.out_proj.bias"]
    x = F.layer_norm(x + a, (D,), t[f"{p}norm1.weight"], t[f"{p}norm1.bias"])
    f = F.relu(x @ t[f"{p}linear1.weight"].T + t[f"{p}linear1.bias"]) @ t[f"{p}linear2.weight"].T + t[f"{p}linear2.bias"]
    return F.layer_norm(x + f, (D,), t[f"{p}norm2.weight"], t[f"{p}norm2.bias"])


def test_hrem_checkpoint_lands_and_image_embedding_matches_the_official_computation(
        tmp_path: Path, tiny_bert: Path) -> None:
    from transformers import BertModel

    from xmodalzoo.convert import convert_checkpoint
    from xmodalzoo.hub import load_model

    torch.manual_seed(0)
    img: dict[str, torch.Tensor] = {}
    linear(img, "fc.fc", D, IMG)
    vse_mlp(img, "fc.mlp", IMG, D // 2, D)
    transformer_layer(img, "aggr.layers.0", D, FF)
    bert = BertModel.from_pretrained(str(tiny_bert)).state_dict()
    txt = {f"bert.{k}": v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in bert.items()}
    txt["bert.embeddings.position_ids"] = torch.arange(64)[None]
    linear(txt, "linear", D, 32)
    transformer_layer(txt, "aggr.layers.0", D, FF)
    torch.save({"model": [img, txt], "opt": argparse.Namespace(nhead=HEADS, residual_weight=0.8, embed_size=D),
                "epoch": 29, "best_rsum": 530.1}, tmp_path / "hrem.pth")
    report = convert_checkpoint("hrem", tmp_path / "hrem.pth", tmp_path / "model",
                                overrides=[f"method.text_encoder.model={tiny_bert}"])
    model = load_model(tmp_path / "model")
    ours = model.state_dict()
    img_map = {"fc.fc.": "image_encoder.fc.", "fc.mlp.layers.0.": "image_encoder.mlp.0.",
               "fc.mlp.bns.0.": "image_encoder.mlp.1.", "fc.mlp.layers.1.": "image_encoder.mlp.3.",
               "aggr.": "image_head.aggr."}
    for key, value in img.items():
        if key.startswith("fc.mlp.bns.1."):
            assert "never applied" in report.dropped[f"model[0][{key!r}]"]
            continue
        src = max((p for p in img_map if key.startswith(p)), key=len)
        assert torch.equal(ours[img_map[src] + key[len(src):]], value), key
    txt_map = {"bert.": "text_encoder.backbone.", "linear.": "text_head.proj.fc.", "aggr.": "text_head.aggr."}
    for key, value in txt.items():
        if key == "bert.embeddings.position_ids":
            assert "recomputes" in report.dropped["model[1]['bert.embeddings.position_ids']"]
            continue
        src = max((p for p in txt_map if key.startswith(p)), key=len)
        assert torch.equal(ours[txt_map[src] + key[len(src):]], value), key
    assert not any(k.startswith("batch_module.") for k in ours)  # training-only, not converted
    assert report.config_from_checkpoint["image_head.num_heads"] == HEADS
    # the official image embedding of 2 images with 5 regions each
    t = {k: v.double() for k, v in img.items()}
    x = torch.randn(2, 5, IMG)
    with torch.no_grad():
        emb = model.image_head(model.image_encoder(x)).vectors
    for b in range(2):
        frags = region_projection(x[b].double(), t, "fc.fc", "fc.mlp.layers.0", "fc.mlp.bns.0", "fc.mlp.layers.1")
        related = _encoder_layer(frags, t, "aggr.layers.0.")
        maxk = frags.topk(2, dim=0).values.mean(0)
        ref = F.normalize(0.8 * maxk + 0.2 * related.mean(0), dim=0)
        assert torch.allclose(emb[b].double(), ref, atol=1e-5)
