"""Issue 11, items 6 and 7: mistakes caught before a run folder exists (one line, exit 2, through the
real ``zoo`` script), a run killed before its first checkpoint resumed in place by ``--resume auto``,
and ``--set method.type=...`` re-typing the method by the documented rule."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tiny import TINY, write_recipe
from xmodalzoo.errors import RecipeError
from xmodalzoo.recipe import load_recipe

ZOO = [str(Path(sys.executable).with_name("zoo"))]


def zoo_env(cwd: Path) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", XMODALZOO_CACHE=str(cwd / "cache"))


def zoo(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(ZOO + list(args), env=zoo_env(cwd), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


BAD_SETTINGS = [
    ("train.param_groups=[{pattern: 'image_encodr.*', lr_mult: 0.1}]", "train.param_groups.0.pattern 'image_encodr.*'"),
    ("train.freeze=[{pattern: text_encoder.embedding, epochs: 1}]", "train.freeze.0.pattern 'text_encoder.embedding'"),
    ("method.similarity.type=mil_max", "method.similarity 'mil_max' accepts set embeddings only"),
]


@pytest.mark.parametrize("setting, named", BAD_SETTINGS, ids=["param_groups", "freeze", "similarity"])
def test_validate_and_train_stop_before_a_run_folder_exists(tmp_path, setting, named):
    recipe = write_recipe(tmp_path)
    line = one_error(zoo("validate", str(recipe), "--set", setting, cwd=tmp_path))
    assert named in line and str(recipe) in line
    line = one_error(zoo("train", str(recipe), "--quiet", "--set", setting, cwd=tmp_path))
    assert named in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_validate_accepts_patterns_that_match(tmp_path):
    recipe = write_recipe(tmp_path, train={"param_groups": [{"pattern": "image_encoder.backbone.*", "lr_mult": 0.1}],
                                           "freeze": [{"pattern": "text_encoder.embed", "epochs": 1}]})
    out = zoo("validate", str(recipe), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK ")


def test_a_failure_at_the_first_step_leaves_no_run_folder(tmp_path, monkeypatch):
    from xmodalzoo.train.trainer import Trainer

    def broken(self, batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("step 1 failed")

    monkeypatch.setattr(Trainer, "train_step", broken)
    recipe = load_recipe(write_recipe(tmp_path))
    with pytest.raises(RuntimeError, match="step 1 failed"):
        Trainer(recipe, tmp_path / "runs" / "tiny", progress=False).fit()
    assert not (tmp_path / "runs" / "tiny").exists()


def test_resume_auto_after_a_kill_in_the_first_epoch_reuses_the_run(tmp_path):
    # a first epoch long enough to be killed in: 2000 images, 8 per step, one metrics line per step
    recipe = write_recipe(tmp_path, data={**TINY["data"], "train_size": 2000},
                          train={"epochs": 1, "batch_size": 8, "log_every": 1})
    run = tmp_path / "runs" / "tiny"
    proc = subprocess.Popen(ZOO + ["train", str(recipe), "--quiet"], env=zoo_env(tmp_path), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count('"step"') >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (run / "checkpoints").exists() and (run / "recipe.resolved.yaml").is_file()
    out = zoo("train", str(recipe), "--quiet", "--resume", "auto", "--set", "train.max_steps_per_epoch=2",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "killed before its first checkpoint; starting it again there" in out.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny"]
    assert (run / "DONE").is_file()
    steps = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "step"' in line]
    assert len(steps) == 2  # the killed run's lines are gone: one line per step of the new run


# ------------------------------------------------------------------ item 7: --set method.type=...
def _recipe(tmp_path: Path, method: dict) -> Path:
    """The tiny recipe with exactly ``method`` as its method section (write_recipe merges sections)."""
    path = write_recipe(tmp_path, name="retype")
    data = yaml.safe_load(path.read_text())
    data["method"] = method
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


ENCODERS = {k: TINY["method"][k] for k in ("image_encoder", "text_encoder")}


def test_changing_the_method_type_takes_the_new_methods_parts(tmp_path):
    path = _recipe(tmp_path, {"type": "vse", "embed_dim": 32, **ENCODERS})
    recipe = load_recipe(path, ["method.type=pcme"])
    m = recipe.method
    assert (m.type, m.image_head.type, m.text_head.type, m.similarity.type, m.loss.type) == (
        "pcme", "pcme_gaussian", "pcme_gaussian", "match_prob", "pcme")
    # what the recipe wrote and means the same to pcme is kept: the encoders sized for the data, embed_dim
    assert m.embed_dim == 32 and m.image_encoder.model == "test_convnext" and m.text_encoder.hidden_dim == 32


def test_an_explicit_part_of_the_old_method_is_named(tmp_path):
    path = _recipe(tmp_path, dict(TINY["method"]))  # heads, similarity and loss written for vse
    with pytest.raises(RecipeError) as err:
        load_recipe(path, ["method.type=pcme"])
    lines = err.value.messages
    assert [line.split(": ")[2].split(" is ")[0] for line in lines] == [
        "method.image_head", "method.text_head", "method.similarity", "method.loss"]
    assert "method.loss is 'triplet' in the recipe (for 'vse'), but 'pcme' has 'pcme' there" in lines[3]
    out = zoo("validate", str(path), "--set", "method.type=pcme", cwd=tmp_path)
    assert out.returncode == 2 and "method.image_head is 'vse_pool'" in out.stderr and "Traceback" not in out.stderr


def test_a_part_set_in_the_same_override_list_is_kept(tmp_path):
    path = _recipe(tmp_path, {"type": "vse", "embed_dim": 32, **ENCODERS,
                              "loss": {"type": "triplet", "margin": 0.3, "hardest": False}})
    kept = load_recipe(path, ["method.type=pcme", "method.loss.margin=0.1"]).method
    assert kept.loss.type == "triplet" and kept.loss.margin == 0.1 and kept.loss.hardest is False
    assert kept.image_head.type == "pcme_gaussian"
    # re-typing the part too: its triplet-only options go, pcme's loss defaults come
    swapped = load_recipe(path, ["method.type=pcme", "method.loss.type=pcme"]).method
    assert swapped.loss.type == "pcme" and not hasattr(swapped.loss, "hardest")
    # the same type again changes nothing
    same = load_recipe(path, ["method.type=vse"]).method
    assert same.loss.type == "triplet" and same.loss.margin == 0.3 and same.image_head.type == "vse_pool"
