"""`zoo train` / `zoo eval` through the real console script, a third-party method trained from a
recipe with no core change, and two-process DDP (gloo) equal to one process on the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny import write_recipe

ZOO = [str(Path(sys.executable).with_name("zoo"))]


def run(cmd, env, cwd, timeout=600):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, XMODALZOO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", COLUMNS="160")
    return e


def test_zoo_train_then_eval_gives_the_same_numbers(tmp_path, env):
    recipe = write_recipe(tmp_path)
    out = run(ZOO + ["train", str(recipe), "--quiet"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "R@1" in out.stdout + out.stderr and "RSUM" in out.stdout + out.stderr
    run_dir = tmp_path / "runs" / "tiny"
    trained = json.loads((run_dir / "eval_results.json").read_text())
    ev = run(ZOO + ["eval", str(run_dir), "--quiet", "--output", str(tmp_path / "again.json")], env, tmp_path)
    assert ev.returncode == 0, ev.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["full"] == trained["full"]
    # a recipe target finds its latest finished run
    ev2 = run(ZOO + ["eval", str(recipe), "--quiet", "--output", str(tmp_path / "again2.json")], env, tmp_path)
    assert ev2.returncode == 0, ev2.stderr
    assert json.loads((tmp_path / "again2.json").read_text())["full"] == trained["full"]


def test_zoo_train_reports_recipe_errors_without_traceback(tmp_path, env):
    recipe = write_recipe(tmp_path)
    out = run(ZOO + ["train", str(recipe), "--set", "train.epochs=zero"], env, tmp_path)
    assert out.returncode == 2
    assert "train.epochs" in out.stderr and "Traceback" not in out.stderr


def test_thirdparty_method_trains_from_a_recipe(tmp_path, env, thirdparty_plugin):
    recipe = write_recipe(tmp_path, name="demo", method={
        "type": "demo_method", "embed_dim": 16,
        "image_encoder": {"type": "timm", "model": "test_convnext", "pretrained": False, "image_size": 32},
        "text_encoder": {"type": "bigru", "word_dim": 16, "hidden_dim": 16},
        "image_head": {"type": "demo_head"}, "text_head": {"type": "demo_head"},
        "similarity": {"type": "cosine"}, "loss": {"type": "triplet"},
    }, train={"epochs": 1})
    out = run(ZOO + ["train", str(recipe), "--quiet"], {**env, "PYTHONPATH": thirdparty_plugin.env()["PYTHONPATH"]},
              tmp_path)
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "runs" / "demo" / "model" / "config.json").read_text())
    assert config["method"]["type"] == "demo_method"
    assert config["plugin"]["distribution"] == "zoo_thirdparty_demo"


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path, env):
    # LayerNorm-only image encoder (BatchNorm statistics would differ per process) and no augmentation
    recipe = write_recipe(tmp_path, name="ddp", method={
        **json.loads(json.dumps(__import__("tiny").TINY["method"])),
        "image_encoder": {"type": "timm", "model": "test_vit", "pretrained": False, "image_size": 32,
                          "transform": {"train_crop": "resize_random", "resize_ratio": 1.0}},
    }, train={"epochs": 1, "batch_size": 32, "max_steps_per_epoch": 2,
              # random captions: an image whose captions fall on both ranks is encoded twice and must be
              # kept once after the gather (one process collates it once)
              "sampler": {"type": "random_captions"},
              # plain SGD: the update is linear in the gradient, so the two runs differ only by the rounding
              # of the all-reduce (Adam divides by √v and blows that rounding up for near-zero gradients)
              "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0}})
    single = run(ZOO + ["train", str(recipe), "--quiet", "--run-dir", str(tmp_path / "one")], env, tmp_path)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                "-m", "xmodalzoo", "train", str(recipe), "--quiet", "--run-dir", str(tmp_path / "two")]
    multi = run(torchrun, env, tmp_path)
    assert multi.returncode == 0, multi.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "checkpoints/last/weights.safetensors"))
    b = load_file(str(tmp_path / "two" / "checkpoints/last/weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
    # and training did move the weights (the comparison is not between two untouched copies)
    env_one = json.loads((tmp_path / "one" / "environment.json").read_text())
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    s1 = [x["loss"] for x in one if x["kind"] == "step"]
    s2 = [x["loss"] for x in lines if x["kind"] == "step"]
    assert s1 == pytest.approx(s2, rel=1e-4) and len(s1) == 2 and s1[0] != s1[1]
    assert env_one["seed"] == 0
