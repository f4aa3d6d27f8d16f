"""Training output without a terminal: plain progress lines (when they are due, what they say) and
wall-clock timestamps on every metrics.jsonl line, checked through the real console script with its
output piped."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny import write_recipe
from xmodalzoo.train.progress import ProgressLines, duration, utc_now

ZOO = str(Path(sys.executable).with_name("zoo"))
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines_with(clock: Clock, **kwargs) -> tuple[ProgressLines, list[str]]:
    out: list[str] = []
    p = ProgressLines(out.append, epochs=3, steps_per_epoch=4, clock=clock, wall=lambda: ("T", 0.0), **kwargs)
    p.start_epoch(1)
    return p, out


def test_lines_every_n_steps_with_the_eta():
    clock = Clock()
    p, out = lines_with(clock, every_steps=2, every_seconds=None)
    clock.now = 5.0
    assert p.step(1, 0.5, 1e-3, 20.0) is None
    clock.now = 10.0  # 5 s per step: 2 steps left in this epoch, 4 in each of the 2 epochs after it
    assert p.step(2, 0.25, 1e-3, 25.6) == "T epoch 1/3 step 2/4 loss 0.2500 lr 1.00e-03 25.6 samples/s ETA epoch 10s, run 50s"
    clock.now = 20.0
    assert p.end_epoch(0.3, 25.0) == "T epoch 1/3 trained: loss 0.3000 25.0 samples/s in 20s; ETA run 40s"
    assert len(out) == 2


def test_lines_every_s_seconds_whatever_the_steps():
    clock = Clock()
    p, out = lines_with(clock, every_steps=None, every_seconds=30.0)
    for step, now in ((1, 10.0), (2, 29.0), (3, 31.0), (4, 40.0)):
        clock.now = now
        p.step(step, 1.0, 1e-3, 1.0)
    assert [x.split()[4] for x in out] == ["3/4"]   # 31 s after the start; the next is due at 61 s
    p.start_epoch(2)
    clock.now = 100.0
    assert p.step(1, 1.0, 1e-3, 1.0) is not None    # a new epoch starts its own clock


def test_no_periodic_lines_when_both_are_off():
    clock = Clock()
    p, out = lines_with(clock, every_steps=None, every_seconds=None)
    clock.now = 1e6
    assert p.step(4, 1.0, 1e-3, 1.0) is None and out == []


def test_durations_and_timestamps():
    assert [duration(s) for s in (0, 45.4, 60, 723, 7500, float("nan"), -1)] == \
        ["0s", "45s", "1m00s", "12m03s", "2h05m", "?", "?"]
    stamp, unix = utc_now()
    assert re.fullmatch(STAMP, stamp)
    assert abs(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - unix) < 1.0


@pytest.mark.slow
def test_zoo_train_piped_prints_progress_lines_and_stamps_metrics(tmp_path):
    recipe = write_recipe(tmp_path, train={"epochs": 2, "max_steps_per_epoch": 2, "log_every_steps": 1,
                                           "log_every_seconds": None, "log_every": 1})
    env = dict(os.environ, XMODALZOO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env.pop("FORCE_COLOR", None)
    env.pop("FORCE_TERMINAL", None)
    start = time.time()
    out = subprocess.run([ZOO, "train", str(recipe)], capture_output=True, text=True, env=env, timeout=600)
    end = time.time()
    assert out.returncode == 0, out.stderr
    progress = [x for x in out.stderr.splitlines() if re.match(STAMP + " epoch", x)]
    number = r"\d+\.\d+"
    for epoch in (1, 2):
        for step in (1, 2):
            pattern = (rf"{STAMP} epoch {epoch}/2 step {step}/2 loss {number} lr \S+ {number} samples/s "
                       rf"ETA epoch \S+, run \S+")
            assert sum(bool(re.fullmatch(pattern, x)) for x in progress) == 1, (epoch, step, progress)
        assert sum(bool(re.fullmatch(rf"{STAMP} epoch {epoch}/2 trained: loss {number} {number} samples/s "
                                     rf"in \S+; ETA run \S+", x)) for x in progress) == 1
    assert len(progress) == 6
    assert "━" not in out.stderr  # no progress bar drawn into the pipe
    records = [json.loads(x) for x in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 6  # 2 step lines and 1 epoch line per epoch
    for r in records:
        assert re.fullmatch(STAMP, r["time"])
        assert start - 1 <= r["unix_time"] <= end + 1
        assert abs(dt.datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() - r["unix_time"]) < 1
    assert [r["unix_time"] for r in records] == sorted(r["unix_time"] for r in records)
    # shapes has exact ground truth: the results carry the reference rows, and the table shows them
    results = json.loads((tmp_path / "runs" / "tiny" / "eval_results.json").read_text())
    assert set(results["reference"]) == {"chance", "oracle"}
    assert results["reference"]["oracle"]["full"]["rsum"] > results["reference"]["chance"]["full"]["rsum"]
    assert "  oracle " in out.stderr and re.search(r"40 images, \d+ captions", out.stderr)
