"""Every shipped recipe validates through the real ``zoo validate``; vse_coco carries the published
defaults and can serve its protocols; a protocol/test-split mismatch fails before training, in one line."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny import write_recipe
from xmodalzoo.cli import main
from xmodalzoo.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
ZOO = str(Path(sys.executable).with_name("zoo"))


def test_recipes_are_found() -> None:
    assert len(RECIPES) >= 2 and ROOT / "recipes" / "vse_coco.yaml" in RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_validates_through_the_console_script(recipe: Path, tmp_path: Path) -> None:
    env = dict(os.environ, XMODALZOO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    out = subprocess.run([ZOO, "validate", str(recipe)], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("OK") and "Traceback" not in out.stderr


def published_defaults() -> dict[str, float]:
    """The numbers of the Defaults and Loss sections of the team's method notes (when present)."""
    notes = ROOT.parent / "shared" / "methods" / "vse.md"
    if not notes.is_file():
        pytest.skip(f"method notes not found at {notes}")
    text = notes.read_text()
    found = {
        "lr": re.search(r"AdamW lr ([0-9.e-]+)", text),
        "weight_decay": re.search(r"weight decay ([0-9.e-]+)", text),
        "epochs": re.search(r"(\d+) epochs", text),
        "milestone": re.search(r"lr × ([0-9.]+) at epoch (\d+)", text),
        "batch": re.search(r"batch (\d+)", text),
        "clip": re.search(r"grad-clip ([0-9.]+)", text),
        "margin": re.search(r"margin ([0-9.]+)", text),
        "drop": re.search(r"(\d+) % fragment drop and (\d+) % token perturbation", text),
    }
    missing = [k for k, m in found.items() if m is None]
    assert not missing, f"vse.md no longer states {missing}"
    m = {k: v for k, v in found.items() if v is not None}
    return {
        "lr": float(m["lr"].group(1)), "weight_decay": float(m["weight_decay"].group(1)),
        "epochs": int(m["epochs"].group(1)), "gamma": float(m["milestone"].group(1)),
        "milestone": int(m["milestone"].group(2)), "batch": int(m["batch"].group(1)),
        "clip": float(m["clip"].group(1)), "margin": float(m["margin"].group(1)),
        "fragment_drop": int(m["drop"].group(1)) / 100, "token_perturb": int(m["drop"].group(2)) / 100,
    }


def test_vse_coco_carries_the_published_defaults() -> None:
    d = published_defaults()
    r = load_recipe(str(ROOT / "recipes" / "vse_coco.yaml"))
    t, m = r.train, r.method
    assert (t.optimizer.name, t.optimizer.lr, t.optimizer.weight_decay) == ("adamw", d["lr"], d["weight_decay"])
    assert t.epochs == d["epochs"] and t.batch_size == d["batch"] and t.grad_clip == d["clip"]
    assert t.scheduler.name == "step" and t.scheduler.milestones == [d["milestone"]] and t.scheduler.gamma == d["gamma"]
    # hinge triplet, margin 0.2: all negatives for the first epoch, hardest negative afterwards
    assert m.loss.type == "triplet" and m.loss.margin == d["margin"] and m.loss.hardest and m.loss.warmup_epochs == 1
    assert m.image_encoder.type == "regions" and m.image_encoder.drop_regions == d["fragment_drop"]
    assert m.image_encoder.in_dim == 2048 and m.embed_dim == 1024
    assert m.text_encoder.type == "bigru" and m.text_encoder.augment.perturb_prob == d["token_perturb"]
    assert m.image_head.pooling == "gpo" and m.text_head.pooling == "gpo"
    # COCO 1K and 5K need the 5,000-image SCAN test set (testall), not the 1,000-image `test` files
    assert r.data.type == "precomp" and r.data.splits["test"] == ["testall"]
    assert set(r.eval.protocols) == {"coco1k", "coco5k"}


def test_vse_coco_protocols_run_on_its_test_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 5,000-image `testall` and a 1,000-image `test` present, the recipe's split passes the check."""
    import numpy as np

    from xmodalzoo.eval.protocols import ProtocolError, check_protocols
    from xmodalzoo.api import build_component as build

    for prefix, n in (("test", 1000), ("testall", 5000)):
        np.lib.format.open_memmap(tmp_path / f"{prefix}_ims.npy", mode="w+", dtype=np.float32, shape=(n, 1, 4)).flush()
        (tmp_path / f"{prefix}_caps.txt").write_text("a caption\n" * (5 * n))
    monkeypatch.setenv("XMODALZOO_PRECOMP_ROOT", str(tmp_path))
    r = load_recipe(str(ROOT / "recipes" / "vse_coco.yaml"))
    test = build("dataset", r.data, split="test")
    assert test.num_images == 5000
    check_protocols(r.eval.protocols, test.num_images, "test")
    old = build("dataset", r.data.model_copy(update={"splits": {**r.data.splits, "test": ["test"]}}), split="test")
    with pytest.raises(ProtocolError, match="coco5k needs at least 5000 images.*test split has 1000.*testall"):
        check_protocols(r.eval.protocols, old.num_images, "test")


def test_protocol_mismatch_fails_before_training_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(2)
    recipe = write_recipe(tmp_path, eval={"batch_size": 64, "protocols": ["full", "coco5k"]})
    status = main(["train", str(recipe), "--quiet", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("error: protocol coco5k needs at least 5000 images") and "test split has 40" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()
