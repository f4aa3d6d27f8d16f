"""The results table fits 80 columns; `zoo eval RUN_DIR` keeps the training meta of eval_results.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tiny import write_recipe
from xmodalzoo.cli import main
from xmodalzoo.eval.report import keep_training_meta, results_table, write_results
from xmodalzoo.recipe import load_recipe
from xmodalzoo.train.trainer import Trainer


def full_row(medr: float, meanr: float) -> dict[str, float]:
    v = {f"{d}_{k}": 100.0 for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")}
    for d in ("i2t", "t2i"):
        v.update({f"{d}_medr": medr, f"{d}_meanr": meanr, f"r_precision_{d}": 100.0, f"map_at_r_{d}": 100.0,
                  f"pmrp_{d}": 100.0})
    v["rsum"] = 600.0
    return v


def render(results: dict, width: int = 80) -> str:
    console = Console(width=width, record=True)
    console.print(results_table(results, title="vse_shapes: test split"))
    return console.export_text()


def test_table_fits_80_columns_with_every_column_and_widest_values() -> None:
    row = full_row(medr=12345.0, meanr=12345.6)
    text = render({"full": row, "coco1k": row, "coco5k": row, "meta": {}})
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # nothing cut
    header = next(line for line in lines if "R@1" in line)
    for label in ("protocol", "dir", "R@1", "R@5", "R@10", "medr", "meanr", "R-Prec", "mAP@R", "PMRP", "RSUM"):
        assert label in header, label
    assert sum("i→t" in line for line in lines) == 3 and sum("t→i" in line for line in lines) == 3
    assert "coco1k" in text and "12345" in text and "12346" in text and "600.0" in text
    # one line per protocol and direction (no wrapped cells): title, header, rule, 6 rows
    assert len([line for line in lines if line.strip()]) == 9


def test_table_small_values_keep_a_decimal() -> None:
    text = render({"full": {"i2t_r1": 12.345, "i2t_medr": 3.0, "i2t_meanr": 7.25, "rsum": 300.0}})
    assert "12.3" in text and " 3 " in text and "7.2" in text and "300.0" in text


def test_keep_training_meta(tmp_path: Path) -> None:
    path = tmp_path / "eval_results.json"
    new = {"full": {"rsum": 1.0}, "meta": {"split": "test", "model": "m"}}
    assert keep_training_meta(new, path) is new and "best_epoch" not in new["meta"]  # no file yet
    write_results({"full": {"rsum": 2.0}, "meta": {"split": "test", "best_epoch": 3, "best_val_rsum": 9.5,
                                                    "seconds": 1.0}}, path)
    keep_training_meta(new, path)
    assert new["meta"] == {"split": "test", "model": "m", "best_epoch": 3, "best_val_rsum": 9.5}
    other = {"meta": {"split": "val"}}
    assert keep_training_meta(other, path)["meta"] == {"split": "val"}  # another split's file: untouched


def test_zoo_eval_run_dir_keeps_best_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(2)
    recipe = load_recipe(write_recipe(tmp_path, train={"epochs": 1, "max_steps_per_epoch": 1}))
    run = tmp_path / "run"
    Trainer(recipe, run, progress=False).fit()
    trained = json.loads((run / "eval_results.json").read_text())
    assert trained["meta"]["best_epoch"] == 1
    assert main(["eval", str(run), "--quiet"]) == 0
    again = json.loads((run / "eval_results.json").read_text())
    assert again["meta"]["best_epoch"] == 1 and again["meta"]["best_val_rsum"] == trained["meta"]["best_val_rsum"]
    assert again["meta"]["model"] == str(run / "model") and again["full"] == trained["full"]
