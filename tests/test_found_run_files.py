"""Issue 11, items 3 and 4, through the real ``zoo`` script: damaged weights files are named in one
line (exit 2), ``--resume auto`` falls back to ``checkpoints/previous``, and ``zoo eval`` evaluates a
run with its own resolved recipe and never writes other numbers over the training results."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny import write_recipe
from xmodalzoo.errors import WeightsFileError
from xmodalzoo.weights import check_safetensors, read_safetensors, read_torch_file

ZOO = [str(Path(sys.executable).with_name("zoo"))]


def zoo(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", XMODALZOO_CACHE=str(cwd / "cache"))
    return subprocess.run(ZOO + list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def error_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-epoch tiny run (2 steps per epoch), trained with ``--set data.test_size=48``:
    its resolved recipe differs from the file's (test_size 40)."""
    root = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(root, train={"epochs": 2, "max_steps_per_epoch": 2})
    out = zoo("train", str(recipe), "--quiet", "--set", "data.test_size=48", cwd=root)
    assert out.returncode == 0, out.stderr
    return root


@pytest.fixture
def work(trained, tmp_path) -> Path:
    """A copy of the trained folder (recipe + runs/tiny) to damage; the recipe points at the copy."""
    shutil.copytree(trained, tmp_path / "w")
    recipe = tmp_path / "w" / "tiny.yaml"
    recipe.write_text(recipe.read_text().replace(str(trained), str(tmp_path / "w")))
    return tmp_path / "w"


# ------------------------------------------------------------------ the reader, every way to cut a file
def test_every_cut_of_a_safetensors_file_is_named(trained, tmp_path):
    data = (trained / "runs/tiny/model/model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    cuts = [0, 1, 7, 8, 9, header_end // 2, header_end - 1, header_end, header_end + 1, len(data) // 2, len(data) - 1]
    for cut in cuts:
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsFileError) as err:
            read_safetensors(path)
        assert str(path) in str(err.value) and "truncated" in str(err.value), (cut, str(err.value))
        assert len(str(err.value).splitlines()) == 1
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsFileError, match="not a safetensors file"):
        read_safetensors(garbage)
    json_garbage = tmp_path / "header.safetensors"
    json_garbage.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\0" * 10)
    with pytest.raises(WeightsFileError, match="header is not a JSON table"):
        check_safetensors(json_garbage)
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(data + b"\0\0\0")
    with pytest.raises(WeightsFileError, match="corrupt"):
        check_safetensors(longer)
    whole = tmp_path / "whole.safetensors"
    whole.write_bytes(data)
    assert set(read_safetensors(whole)) == set(check_safetensors(whole)) - {"__metadata__"}
    with pytest.raises(WeightsFileError, match="no such file"):
        read_safetensors(tmp_path / "absent.safetensors")


def test_every_cut_of_a_training_state_is_named(trained, tmp_path):
    data = (trained / "runs/tiny/checkpoints/last/train_state.pt").read_bytes()
    for cut in (0, 10, len(data) // 3, len(data) - 100, len(data) - 1):
        path = tmp_path / f"state{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsFileError) as err:
            read_torch_file(path, weights_only=False)
        assert str(path) in str(err.value) and len(str(err.value).splitlines()) == 1
    path = tmp_path / "garbage.pt"
    path.write_bytes(os.urandom(2000))
    with pytest.raises(WeightsFileError, match="garbage.pt: "):
        read_torch_file(path)


def test_zoo_load_names_a_damaged_model_file(work):
    import xmodalzoo as zoo_api

    weights = work / "runs/tiny/model/model.safetensors"
    os.truncate(weights, weights.stat().st_size - 10)
    with pytest.raises(WeightsFileError, match=r"model\.safetensors: truncated"):
        zoo_api.load(work / "runs/tiny/model")


# ------------------------------------------------------------------------------ through the zoo script
@pytest.mark.parametrize("damage", ["header", "half", "garbage"])
def test_zoo_eval_names_a_damaged_model_file(work, damage):
    weights = work / "runs/tiny/model/model.safetensors"
    size = weights.stat().st_size
    if damage == "garbage":
        weights.write_bytes(os.urandom(size))
    else:
        os.truncate(weights, 20 if damage == "header" else size // 2)
    out = zoo("eval", "runs/tiny", "--quiet", cwd=work)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = error_lines(out)
    assert "runs/tiny/model/model.safetensors" in line
    assert ("not a safetensors file" if damage == "garbage" else "truncated") in line


def test_resume_auto_falls_back_to_the_previous_checkpoint_and_ends_alike(work, trained):
    run = work / "runs/tiny"
    (run / "DONE").unlink()
    (run / "eval_results.json").unlink()
    weights = run / "checkpoints/last/weights.safetensors"
    os.truncate(weights, weights.stat().st_size // 3)
    out = zoo("train", "tiny.yaml", "--quiet", "--resume", "auto", "--set", "data.test_size=48", cwd=work)
    assert out.returncode == 0, out.stderr
    warning = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "checkpoints/last/weights.safetensors: truncated" in warning[0]
    assert "checkpoints/previous (after epoch 1)" in warning[0]
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["tiny"]
    # epoch 2 trained again from epoch 1's checkpoint: the same numbers as the undamaged run
    again = json.loads((run / "eval_results.json").read_text())
    first = json.loads((trained / "runs/tiny/eval_results.json").read_text())
    assert again["full"] == first["full"]
    assert json.loads((run / "checkpoints/last/meta.json").read_text())["epoch"] == 2


def test_resume_with_no_good_checkpoint_is_one_line(work):
    run = work / "runs/tiny"
    (run / "DONE").unlink()
    os.truncate(run / "checkpoints/last/train_state.pt", 100)
    (run / "checkpoints/previous/weights.safetensors").write_bytes(b"garbage")
    out = zoo("train", "tiny.yaml", "--quiet", "--resume", str(run), cwd=work)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = error_lines(out)
    assert "checkpoints/last/train_state.pt: truncated or corrupt" in line
    assert "no earlier good checkpoint" in line


# -------------------------------------------------------------------- zoo eval and the results files
def test_zoo_eval_of_a_recipe_uses_the_runs_resolved_data(work):
    run = work / "runs/tiny"
    before = json.loads((run / "eval_results.json").read_text())
    assert before["meta"]["num_images"] == 48  # trained with --set data.test_size=48
    out = zoo("eval", "tiny.yaml", "--quiet", cwd=work)  # the file says test_size: 40
    assert out.returncode == 0, out.stderr
    assert "evaluating" in out.stderr and "on the data it was trained with" in out.stderr
    after = json.loads((run / "eval_results.json").read_text())
    assert after["meta"]["num_images"] == 48 and after["full"] == before["full"]
    assert after["meta"]["best_epoch"] == before["meta"]["best_epoch"] == 1
    assert sorted(p.name for p in run.glob("eval_results*")) == ["eval_results.json"]


def test_zoo_eval_with_other_data_writes_a_named_file(work):
    run = work / "runs/tiny"
    training = (run / "eval_results.json").read_bytes()
    out = zoo("eval", "runs/tiny", "--quiet", "--set", "data.test_size=40", cwd=work)
    assert out.returncode == 0, out.stderr
    assert (run / "eval_results.json").read_bytes() == training
    (named,) = [p for p in run.glob("eval_results.test-*.json")]
    assert len(named.name) == len("eval_results.test-12345678.json")
    other = json.loads(named.read_text())
    assert other["meta"]["num_images"] == 40 and "best_epoch" not in other["meta"]
    assert f"results written to {named.relative_to(work)}" in out.stdout
    # options that change only how the work is done keep the run's own file (same numbers)
    out = zoo("eval", "runs/tiny", "--quiet", "--set", "eval.max_bytes=4000000", "--set", "eval.batch_size=7",
              cwd=work)
    assert out.returncode == 0, out.stderr
    same = json.loads((run / "eval_results.json").read_text())
    assert same["full"] == json.loads(training)["full"] and same["meta"]["best_epoch"] == 1
    # an explicit --output may not name the training results with other data
    out = zoo("eval", "runs/tiny", "--quiet", "--set", "data.test_size=40", "--output", "runs/tiny/eval_results.json",
              cwd=work)
    assert out.returncode == 2
    (line,) = error_lines(out)
    assert "--output runs/tiny/eval_results.json" in line and "data.test_size" in line
    assert json.loads((run / "eval_results.json").read_text())["full"] == same["full"]


def test_keep_training_meta_keeps_the_uncertainty_section(tmp_path):
    from xmodalzoo.eval.report import keep_training_meta

    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps({"full": {"rsum": 1.0}, "meta": {"split": "test", "best_epoch": 3, "best_val_rsum": 9.0},
                                "uncertainty": {"i2t": [1], "t2i": [2], "plot": "u.png"}}))
    new = keep_training_meta({"full": {"rsum": 1.0}, "meta": {"split": "test"}}, path)
    assert new["uncertainty"] == {"i2t": [1], "t2i": [2], "plot": "u.png"} and new["meta"]["best_epoch"] == 3
    fresh = {"full": {"rsum": 1.0}, "meta": {"split": "test"}, "uncertainty": {"i2t": [5]}}
    assert keep_training_meta(fresh, path)["uncertainty"] == {"i2t": [5]}  # a new report wins
    other_split = keep_training_meta({"meta": {"split": "val"}}, path)
    assert "uncertainty" not in other_split and "best_epoch" not in other_split["meta"]
