"""Checkpoints and resume: saved before validation, the `.last.old` left between the two renames,
metrics.jsonl without duplicate lines after a resume, and the same result as an uninterrupted run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tiny import write_recipe
from xmodalzoo.recipe import load_recipe
from xmodalzoo.files import committed_dir as checkpoint_path, old_dir, truncate_jsonl
from xmodalzoo.train.checkpoint import load_checkpoint, save_checkpoint
from xmodalzoo.rundir import LAST, find_resumable
from xmodalzoo.train.trainer import Trainer


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(2)


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> list[tuple]:
    return [(x["kind"], x["epoch"], x["step"], x["loss"], x.get("val_rsum")) for x in lines(run)]


def test_commit_leftover_old_is_used_then_cleaned(tmp_path: Path) -> None:
    lin = nn.Linear(2, 2)
    final = tmp_path / "checkpoints" / "last"
    save_checkpoint(final, {"m": lin}, {"epoch": 0}, {"epoch": 0})
    os.replace(final, old_dir(final))  # a crash after the first rename of the next commit
    assert checkpoint_path(final) == old_dir(final)
    assert load_checkpoint(final, {"m": nn.Linear(2, 2)})["epoch"] == 0
    save_checkpoint(final, {"m": lin}, {"epoch": 1}, {"epoch": 1})
    assert checkpoint_path(final) == final and not old_dir(final).exists()
    assert load_checkpoint(final, {"m": lin})["epoch"] == 1


def test_truncate_jsonl_is_selective(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    assert truncate_jsonl(path, lambda x: x["step"] <= 2) == 2
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert truncate_jsonl(path, lambda x: True) == 0 and [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_interrupted_in_validation_training_and_commit_resumes_to_the_same_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load_recipe(write_recipe(tmp_path, train={"max_steps_per_epoch": 2}))
    straight = tmp_path / "straight"
    Trainer(recipe, straight, progress=False).fit()

    run = tmp_path / "resumed"
    real_validate, real_step = Trainer.validate, Trainer.train_step

    # 1. validation of epoch 1 fails: the epoch's training is already checkpointed
    def failing_validate(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("validation failed")

    monkeypatch.setattr(Trainer, "validate", failing_validate)
    with pytest.raises(RuntimeError, match="validation failed"):
        Trainer(recipe, run, progress=False).fit()
    meta = json.loads((run / LAST / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["step"] == 2 and meta["validated"] is False  # epochs from 1
    assert [x["kind"] for x in lines(run)] == ["step", "step"]
    monkeypatch.setattr(Trainer, "validate", real_validate)

    # 2. resumed: epoch 1 is validated and logged, then a crash in epoch 2 after its first step is logged
    def crash_at_step_4(self, batch):  # type: ignore[no-untyped-def]
        if self.step == 3:
            raise KeyboardInterrupt("simulated crash in epoch 2")
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        Trainer(recipe, run, resume=True, progress=False).fit()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert [(x["kind"], x["step"]) for x in lines(run)] == [("step", 1), ("step", 2), ("epoch", 2), ("step", 3)]
    # epoch 1, now validated and logged, was saved again as such
    meta = json.loads((run / LAST / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["step"] == 2 and meta["validated"] is True
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "ep')  # a line cut short by the crash

    # 3. a crash between the two renames of a checkpoint commit leaves only .last.old
    os.replace(run / LAST, old_dir(run / LAST))
    assert find_resumable(tmp_path, "resumed") == run

    # 4. resume to the end: same weights, same test results, same metrics lines, no duplicates; the
    # validated epoch 1 is not validated again
    validated: list[int] = []

    def counting_validate(self):  # type: ignore[no-untyped-def]
        validated.append(self.epoch)
        return real_validate(self)

    monkeypatch.setattr(Trainer, "validate", counting_validate)
    Trainer(recipe, run, resume=True, progress=False).fit()
    assert validated == list(range(1, recipe.train.epochs))
    a = load_file(str(straight / LAST / "weights.safetensors"))
    b = load_file(str(run / LAST / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((p / "eval_results.json").read_text()) for p in (straight, run))
    assert ra["full"] == rb["full"] and ra["meta"]["best_epoch"] == rb["meta"]["best_epoch"]
    assert summary(run) == summary(straight)
    steps = [x["step"] for x in lines(run) if x["kind"] == "step"]
    assert steps == sorted(set(steps))
