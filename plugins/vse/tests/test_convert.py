"""zoo convert --from vse-infinity through the real ``zoo`` script: a fake VSE∞ checkpoint
(``[img_sd, txt_sd]``, every key prefixed ``module.``, an argparse Namespace opt, a numpy best_rsum)
with a separate VSE∞ vocabulary JSON lands tensor by tensor, and the converted region projection
equals the official formula computed from the checkpoint's tensors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from convert_fakes import IMG, VSE_D, VSE_WORDS, fake_vse_infinity, region_projection

ZOO = Path(sys.executable).with_name("zoo")


def test_zoo_convert_vse_infinity(tmp_path: Path) -> None:
    from xmodalzoo.hub import load_model

    img, txt = fake_vse_infinity(tmp_path)
    proc = subprocess.run([str(ZOO), "convert", "--from", "vse-infinity", str(tmp_path / "vse.pth"),
                           "-o", str(tmp_path / "model"), "--vocab", str(tmp_path / "coco_precomp_vocab.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "dropped 1: model[0]['module.mlp.bns.1.weight']" not in proc.stdout  # grouped by reason
    assert "never applied by the official forward" in proc.stdout
    model = load_model(tmp_path / "model")
    ours = model.state_dict()
    expected = {"fc.": "image_encoder.fc.", "mlp.layers.0.": "image_encoder.mlp.0.",
                "mlp.bns.0.": "image_encoder.mlp.1.", "mlp.layers.1.": "image_encoder.mlp.3.",
                "gpool.gru.": "image_head.gpo.gru.", "gpool.linear.": "image_head.gpo.score."}
    for key, value in img.items():
        if key.startswith("mlp.bns.1."):
            continue
        src = max((p for p in expected if key.startswith(p)), key=len)
        assert torch.equal(ours[expected[src] + key[len(src):]], value), key
    text = {"embed.": "text_encoder.embed.", "rnn.": "text_encoder.rnn.", "gpool.gru.": "text_head.gpo.gru.",
            "gpool.linear.": "text_head.gpo.score."}
    for key, value in txt.items():
        src = max((p for p in text if key.startswith(p)), key=len)
        assert torch.equal(ours[text[src] + key[len(src):]], value), key
    report = json.loads((tmp_path / "model" / "conversion.json").read_text())
    assert sorted(k for k, r in report["dropped"].items() if "never applied" in r) == [
        f"model[0]['module.mlp.bns.1.{n}']" for n in sorted(["bias", "num_batches_tracked", "running_mean",
                                                               "running_var", "weight"])]
    assert report["entries"]["best_rsum"].startswith("validation score")
    assert report["config_from_checkpoint"]["embed_dim"] == VSE_D
    assert model.tokenizer.words == VSE_WORDS
    # the official region projection fc(x) + MLP(x) (BatchNorm with running statistics), by the formula
    t = {k: v.double() for k, v in img.items()}
    x = torch.randn(2, 5, IMG)
    with torch.no_grad():
        local = model.image_encoder(x).local
    ref = region_projection(x.double(), t, "fc", "mlp.layers.0", "mlp.bns.0", "mlp.layers.1")
    assert torch.allclose(local.double(), ref, atol=1e-5)


def test_missing_vocabulary_is_one_line_exit_2(tmp_path: Path) -> None:
    fake_vse_infinity(tmp_path)
    proc = subprocess.run([str(ZOO), "convert", "--from", "vse-infinity", str(tmp_path / "vse.pth"),
                           "-o", str(tmp_path / "model")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "holds no vocabulary" in proc.stderr and "--vocab" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "model").exists()
