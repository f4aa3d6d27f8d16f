"""`zoo eval --uncertainty` through the real console script: a table, the bins in the results JSON and a
PNG for a method with Gaussian embeddings; a one-line error for a method without uncertainty."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny import write_recipe

ZOO = [str(Path(sys.executable).with_name("zoo"))]
PCME = {
    "type": "pcme",
    "embed_dim": 16,
    "image_encoder": {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 32},
    "text_encoder": {"type": "bigru", "word_dim": 16, "hidden_dim": 16, "combine": "mean"},
    "image_head": {"type": "pcme_gaussian", "source": "local", "d_hidden": 8, "logvar_init": -6.0},
    "text_head": {"type": "pcme_gaussian", "source": "inputs", "d_hidden": 8, "sigma_gru": True, "logvar_init": -6.0},
    "similarity": {"type": "match_prob", "num_samples": 3, "init_scale": 5.0, "init_shift": 5.0},
    "loss": {"type": "pcme", "vib_weight": 1.0e-4},
}


def zoo(args, tmp_path):
    env = dict(os.environ, XMODALZOO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", COLUMNS="120")
    return subprocess.run(ZOO + args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_eval_uncertainty_writes_bins_and_a_plot(tmp_path):
    recipe = write_recipe(tmp_path, name="tiny_pcme", method=PCME, train={"epochs": 1, "max_steps_per_epoch": 2})
    assert zoo(["train", str(recipe), "--quiet"], tmp_path).returncode == 0
    run = tmp_path / "runs" / "tiny_pcme"
    out = zoo(["eval", str(run), "--uncertainty", "--quiet"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "R@1 per uncertainty bin" in out.stdout
    png = run / "uncertainty_test.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((run / "eval_results.json").read_text())
    bins = results["uncertainty"]
    for direction, queries in (("i2t", 40), ("t2i", 200)):
        rows = bins[direction]
        assert len(rows) == 10 and sum(b["count"] for b in rows) == queries
        assert [b["mean_uncertainty"] for b in rows] == sorted(b["mean_uncertainty"] for b in rows)
    assert results["meta"]["encode_seconds"] > 0  # encoded once, for the bins and the metrics alike
    assert results["meta"]["best_epoch"] == 1  # training's meta is kept


def test_eval_uncertainty_of_a_point_embedding_method_is_a_one_line_error(tmp_path):
    recipe = write_recipe(tmp_path, train={"epochs": 1, "max_steps_per_epoch": 1})
    assert zoo(["train", str(recipe), "--quiet"], tmp_path).returncode == 0
    out = zoo(["eval", str(tmp_path / "runs" / "tiny"), "--uncertainty", "--quiet"], tmp_path)
    assert out.returncode == 2
    assert "--uncertainty" in out.stderr and "carry no uncertainty" in out.stderr and "Traceback" not in out.stderr
