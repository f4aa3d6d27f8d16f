"""The run directory (one owner of a run's file names), finding runs, and resolving devices."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from xmodalzoo.devices import resolve_device
from xmodalzoo.errors import DeviceError
from xmodalzoo.files import commit_dir, committed_dir, old_dir, write_text_atomic
from xmodalzoo.rundir import RunDir, find_resumable, latest_finished, next_run, results_name, runs_of


def make_run(root: Path, name: str, *, checkpoint_at: float | None = None, done_at: float | None = None) -> RunDir:
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    if checkpoint_at is not None:
        run.last.mkdir(parents=True)
        os.utime(run.last, (checkpoint_at, checkpoint_at))
    if done_at is not None:
        run.mark_done(best_epoch=1)
        os.utime(run.done, (done_at, done_at))
    return run


def test_paths_of_a_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert run == tmp_path / "r" and run == str(tmp_path / "r") and Path(run) == tmp_path / "r"
    assert {run: 1}[RunDir(tmp_path / "r")] == 1
    assert (run.resolved_recipe.name, run.environment.name, run.metrics.name) == (
        "recipe.resolved.yaml", "environment.json", "metrics.jsonl")
    assert run.last == tmp_path / "r" / "checkpoints" / "last" and run.best.name == "best" and run.model.name == "model"
    assert run.results() == run.results("test") == tmp_path / "r" / "eval_results.json"
    assert results_name("val") == "eval_results_val.json"
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        run.require_recipe()
    assert not run.finished
    run.path.mkdir()
    run.mark_done(best_epoch=3)
    assert run.finished and json.loads(run.done.read_text()) == {"best_epoch": 3}


def test_next_run_and_runs_of_a_recipe(tmp_path: Path) -> None:
    assert next_run(tmp_path, "vse") == tmp_path / "vse"
    for name in ("vse", "vse-2", "vse_coco", "vse-x"):
        (tmp_path / name).mkdir()
    assert next_run(tmp_path, "vse") == tmp_path / "vse-3"
    assert [r.name for r in runs_of(tmp_path, "vse")] == ["vse", "vse-2"]


def test_resumable_and_latest_finished_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "m", checkpoint_at=100)
    newest = make_run(tmp_path, "m-2", checkpoint_at=300)
    make_run(tmp_path, "m-3", checkpoint_at=500, done_at=600)  # finished: never resumed
    make_run(tmp_path, "m-4")  # no checkpoint yet
    assert find_resumable(tmp_path, "m") == newest
    assert latest_finished(tmp_path, "m") == tmp_path / "m-3"
    assert find_resumable(tmp_path, "other") is None and latest_finished(tmp_path, "other") is None
    # a crash between the two renames of a checkpoint commit leaves only .last.old: still resumable
    os.replace(newest.last, old_dir(newest.last))
    assert newest.last_checkpoint() == old_dir(newest.last) and find_resumable(tmp_path, "m") == newest


def test_atomic_directory_swap(tmp_path: Path) -> None:
    final = tmp_path / "folder"
    for content in ("one", "two"):
        tmp = tmp_path / f".tmp-{content}"
        tmp.mkdir()
        write_text_atomic(tmp / "file.txt", content)
        commit_dir(tmp, final)
        assert committed_dir(final) == final and (final / "file.txt").read_text() == content
    assert not old_dir(final).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(DeviceError, match="'cuda' was asked for but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", local_rank=1) == resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
