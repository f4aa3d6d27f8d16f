"""zoo convert --from pcme: a fake checkpoint in the official PCME layout (tiny dims, fp16 heads,
``module.`` prefix, criterion scalars, word2idx, an argparse Namespace) lands tensor by tensor, and the
converted heads and match probability equal a hand-wired reference from the checkpoint's tensors."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from convert_fakes import gru, linear, norm

D, WORD, HID, DH_IMG, DH_TXT = 8, 6, 4, 5, 3
WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "red", "square", "blue", "circle"]
RECIPE = """
method:
  type: pcme
  image_encoder: {type: timm, model: test_resnet, pretrained: false, image_size: 32}
"""


def fake_pcme_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Saves the fake file; returns its state dict without the ``module.`` prefix."""
    import timm

    torch.manual_seed(0)
    cnn = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    sd: dict[str, torch.Tensor] = {}
    for k, v in cnn.state_dict().items():  # a trained-looking backbone: random values, fp32 BN stats
        sd[f"img_enc.cnn.{k}"] = torch.randint(0, 5, v.shape) if k.endswith("num_batches_tracked") else (
            torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v) * 0.1)
    sd["img_enc.cnn.fc.weight"] = torch.randn(10, 96)  # an ImageNet classifier left in the file
    sd["img_enc.cnn.fc.bias"] = torch.randn(10)
    c = cnn.num_features
    h = torch.float16  # apex O2 checkpoints hold fp16 heads
    linear(sd, "img_enc.fc", D, c, dtype=h)
    for side, fin, dh in (("img_enc", c, DH_IMG), ("txt_enc", WORD, DH_TXT)):
        linear(sd, f"{side}.pie_net.attention.w_1", dh, fin, bias=False, dtype=h)
        linear(sd, f"{side}.pie_net.attention.w_2", 1, dh, bias=False, dtype=h)
        linear(sd, f"{side}.pie_net.fc", D, fin, dtype=h)
        norm(sd, f"{side}.pie_net.layer_norm", D, dtype=h)
        linear(sd, f"{side}.uncertain_net.attention.w_1", dh, fin, bias=False, dtype=h)
        linear(sd, f"{side}.uncertain_net.attention.w_2", 1, dh, bias=False, dtype=h)
        linear(sd, f"{side}.uncertain_net.fc", D, fin, dtype=h)
    linear(sd, "img_enc.uncertain_net.fc2", D, c, dtype=h)
    sd["txt_enc.embed.weight"] = torch.randn(len(WORDS), WORD).half()
    gru(sd, "txt_enc.rnn", WORD, HID, dtype=h)
    gru(sd, "txt_enc.uncertain_net.rnn", WORD, D // 2, dtype=h)
    torch.save({
        "model": {f"module.{k}": v for k, v in sd.items()},
        "criterion": {"negative_scale": torch.tensor(13.5), "shift": torch.tensor(11.0)},
        "config": argparse.Namespace(embed_dim=D, n_samples_inference=7),
        "word2idx": {w: i for i, w in enumerate(WORDS)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
        "epoch": 30,
    }, path)
    return sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    from xmodalzoo.convert import convert_checkpoint
    from xmodalzoo.hub import load_model

    tmp = tmp_path_factory.mktemp("pcme_convert")
    recipe = tmp / "r.yaml"
    recipe.write_text(RECIPE)
    sd = fake_pcme_checkpoint(tmp / "pcme.pth")
    report = convert_checkpoint("pcme", tmp / "pcme.pth", tmp / "model", recipe=recipe)
    return sd, report, load_model(tmp / "model"), tmp


def test_every_official_tensor_lands_or_is_dropped_with_a_reason(converted) -> None:
    sd, report, model, tmp = converted
    ours = model.state_dict()
    pairs = {"img_enc.cnn.": "image_encoder.backbone.", "img_enc.fc.": "image_head.global_proj.",
             "img_enc.uncertain_net.fc2.": "image_head.sigma_global.",
             "txt_enc.embed.": "text_encoder.embed.", "txt_enc.rnn.": "text_encoder.rnn.",
             "txt_enc.uncertain_net.rnn.": "text_head.sigma_gru.rnn."}
    for side, head in (("img_enc.", "image_head."), ("txt_enc.", "text_head.")):
        pairs.update({f"{side}pie_net.attention.w_1.": f"{head}mu_attention.w1.",
                      f"{side}pie_net.attention.w_2.": f"{head}mu_attention.w2.",
                      f"{side}pie_net.fc.": f"{head}mu_residual.", f"{side}pie_net.layer_norm.": f"{head}layer_norm.",
                      f"{side}uncertain_net.attention.w_1.": f"{head}sigma_attention.w1.",
                      f"{side}uncertain_net.attention.w_2.": f"{head}sigma_attention.w2.",
                      f"{side}uncertain_net.fc.": f"{head}sigma_local."})
    checked = 0
    for key, value in sd.items():
        if key.startswith("img_enc.cnn.fc."):
            assert "ImageNet classifier" in report.dropped[f"model['module.{key}']"]
            continue
        src = max((p for p in pairs if key.startswith(p)), key=len)
        dst = pairs[src] + key[len(src):]
        assert ours[dst].dtype == (torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
        assert torch.equal(ours[dst], value.to(ours[dst].dtype)), key
        checked += 1
    assert checked == len(sd) - 2
    assert report.casts["float16->float32"] > 0
    a = F.softplus(ours["similarity.logit.raw_scale"]).item()
    assert a == pytest.approx(13.5, rel=1e-6) and ours["similarity.logit.shift"].item() == 11.0
    written = json.loads((tmp / "model" / "conversion.json").read_text())
    assert written["entries"]["optimizer"].startswith("optimizer state")
    assert written["entries"]["criterion"].startswith("negative_scale and shift")
    assert model.tokenizer.words == WORDS


def _attend(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Σ_l softmax_l(w2 tanh(w1 x_l)) x_l for (B, L, F) x, by the formula."""
    out = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64)
    for b in range(x.shape[0]):
        scores = torch.stack([(w2 @ torch.tanh(w1 @ x[b, l])).squeeze() for l in range(x.shape[1])])
        alpha = scores.softmax(0)
        out[b] = sum(alpha[l] * x[b, l] for l in range(x.shape[1]))
    return out


def test_image_gaussian_and_match_probability_equal_a_hand_wired_reference(converted) -> None:
    sd, _, model, _ = converted
    t = {k: v.double() for k, v in sd.items()}
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.image_encoder(images)  # the backbone's weights were compared one by one above
        emb = model.image_head(feats)
    x, pooled = feats.local.double(), feats.pooled.double()
    g = pooled @ t["img_enc.fc.weight"].T + t["img_enc.fc.bias"]
    att = _attend(x, t["img_enc.pie_net.attention.w_1.weight"], t["img_enc.pie_net.attention.w_2.weight"])
    r = torch.sigmoid(att @ t["img_enc.pie_net.fc.weight"].T + t["img_enc.pie_net.fc.bias"])
    mu = F.normalize(F.layer_norm(g + r, (D,), t["img_enc.pie_net.layer_norm.weight"],
                                  t["img_enc.pie_net.layer_norm.bias"]), dim=-1)
    satt = _attend(x, t["img_enc.uncertain_net.attention.w_1.weight"], t["img_enc.uncertain_net.attention.w_2.weight"])
    logsigma = (satt @ t["img_enc.uncertain_net.fc.weight"].T + t["img_enc.uncertain_net.fc.bias"]
                + pooled @ t["img_enc.uncertain_net.fc2.weight"].T + t["img_enc.uncertain_net.fc2.bias"])
    assert torch.allclose(emb.mean.double(), mu, atol=1e-5)
    assert torch.allclose(emb.logvar.double(), 2 * logsigma, atol=1e-4)  # ours: log σ² = 2 log σ
    # the official match probability of given samples (J = 2 each): mean over pairs of sigmoid(2(−a·d + b))
    z1, z2 = torch.randn(1, 2, D), torch.randn(1, 2, D)
    with torch.no_grad():
        prob = torch.sigmoid(2 * model.similarity.pair_logits(z1, z2)).mean()
    expected = sum(1 / (1 + math.exp(-2 * (-13.5 * math.sqrt(float(((z1[0, i] - z2[0, j]) ** 2).sum()) + 1e-6) + 11.0)))
                   for i in range(2) for j in range(2)) / 4
    assert float(prob) == pytest.approx(expected, rel=1e-5)
