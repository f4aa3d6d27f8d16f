"""zoo convert --from pvse: a fake checkpoint in the older ``[img_sd, txt_sd]`` PVSE layout (K = 2,
tiny dims) lands tensor by tensor, and the converted text head equals the PIE formula computed from
the checkpoint's tensors (the legacy last-token global feature included)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from convert_fakes import gru, linear, norm

D, WORD, HID, K = 8, 6, 4, 2
WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "cat", "sits"]
RECIPE = """
method:
  type: pvse
  image_encoder: {type: timm, model: test_resnet, pretrained: false, image_size: 32}
  text_encoder: {type: bigru}
  text_head: {type: pvse_pie, num_heads: 2, project_global: false}
"""


def fake_pvse(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    import timm

    torch.manual_seed(0)
    cnn = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    img = {f"cnn.{k}": (torch.rand_like(v) + 0.5 if "running_var" in k else
                        v.clone() if k.endswith("num_batches_tracked") else torch.randn_like(v) * 0.1)
           for k, v in cnn.state_dict().items()}
    c = cnn.num_features
    linear(img, "fc", D, c)
    txt = {"embed.weight": torch.randn(len(WORDS), WORD)}
    gru(txt, "rnn", WORD, HID)
    for sd, fin, dh in ((img, c, 5), (txt, WORD, 3)):
        linear(sd, "pie_net.attention.w_1", dh, fin, bias=False)
        linear(sd, "pie_net.attention.w_2", K, dh, bias=False)
        linear(sd, "pie_net.fc", D, fin)
        norm(sd, "pie_net.layer_norm", D)
    torch.save([img, txt], folder / "pvse.pth")  # the older format: a bare list of two state dicts
    (folder / "vocab.json").write_text(json.dumps(WORDS))
    (folder / "r.yaml").write_text(RECIPE)
    return img, txt


def test_pvse_checkpoint_lands_and_text_head_matches_the_pie_formula(tmp_path: Path) -> None:
    from xmodalzoo.convert import convert_checkpoint
    from xmodalzoo.hub import load_model

    img, txt = fake_pvse(tmp_path)
    report = convert_checkpoint("pvse", tmp_path / "pvse.pth", tmp_path / "model", recipe=tmp_path / "r.yaml",
                                vocab=tmp_path / "vocab.json")
    model = load_model(tmp_path / "model")
    ours = model.state_dict()
    for key, value in img.items():
        dst = ("image_encoder.backbone." + key[4:] if key.startswith("cnn.") else
               "image_head.global_fc." + key[3:] if key.startswith("fc.") else "image_head." + key[len("pie_net."):])
        assert torch.equal(ours[dst], value), key
    for key, value in txt.items():
        dst = "text_head." + key[len("pie_net."):] if key.startswith("pie_net.") else "text_encoder." + key
        assert torch.equal(ours[dst], value), key
    assert report.mapped["text_head.fc.weight"]["from"] == "[1]['pie_net.fc.weight']"
    assert report.config_from_checkpoint["image_head.num_heads"] == K
    # the PIE text head by its formula: v_k = L2norm(LayerNorm(g + sigmoid(fc(Σ_l α_kl x_l)))),
    # α_k = softmax_l(w_2 tanh(w_1 x_l))_k over the word embeddings, g = biGRU output at the last word
    with torch.no_grad():
        feats = model.text_encoder(model.tokenizer(["a cat sits", "a cat"]))
        sets = model.text_head(feats).vectors
    t = {k: v.double() for k, v in txt.items()}
    for b, length in enumerate(feats.mask.sum(1).tolist()):
        x = feats.inputs[b, :length].double()
        g = feats.local[b, length - 1].double()  # legacy global feature: the output at the last token
        assert torch.allclose(feats.pooled[b].double(), g)
        scores = torch.tanh(x @ t["pie_net.attention.w_1.weight"].T) @ t["pie_net.attention.w_2.weight"].T
        alpha = scores.softmax(0)  # (L, K)
        for k in range(K):
            pooled = (alpha[:, k:k + 1] * x).sum(0)
            r = torch.sigmoid(t["pie_net.fc.weight"] @ pooled + t["pie_net.fc.bias"])
            v = F.layer_norm(g + r, (D,), t["pie_net.layer_norm.weight"], t["pie_net.layer_norm.bias"])
            assert torch.allclose(sets[b, k].double(), F.normalize(v, dim=0), atol=1e-5)


def test_a_tensor_of_unknown_name_is_an_error_listing_it(tmp_path: Path) -> None:
    from xmodalzoo.convert import convert_checkpoint
    from xmodalzoo.errors import CheckpointError

    img, txt = fake_pvse(tmp_path)
    txt["extra.weight"] = torch.zeros(2)
    torch.save([img, txt], tmp_path / "pvse.pth")
    with pytest.raises(CheckpointError, match=r"neither mapped nor dropped: \[1\]\['extra.weight'\]"):
        convert_checkpoint("pvse", tmp_path / "pvse.pth", tmp_path / "model", recipe=tmp_path / "r.yaml",
                           vocab=tmp_path / "vocab.json")
    assert not (tmp_path / "model").exists()
