"""benchmarks/train_throughput.py measures the relation module's share by alternating steps with it on
and off on the same batches, and leaves the module's warm-up as it was."""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import pytest

from hrem_testing import tiny_recipe
from xmodalzoo.train.trainer import Trainer

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "train_throughput.py"


def benchmark_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_throughput_benchmark", BENCHMARK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_module_share_alternates_on_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    bench = benchmark_module()
    trainer = Trainer(tiny_recipe(tmp_path, epochs=1), tmp_path / "run", progress=False)
    trainer.setup()
    trainer.begin_epoch()
    module = trainer.method.batch_module
    calls: list[bool] = []
    real_forward = module.forward
    monkeypatch.setattr(module, "forward", lambda *a: calls.append(True) or real_forward(*a))
    batches = list(itertools.islice(bench.epochs_of_batches(trainer, 0), 2))
    on, off = bench.batch_module_share(trainer, batches, 2, lambda: None)
    assert len(on) == len(off) == 2 and all(t > 0 for t in on + off)
    assert len(calls) == 2  # called in the two "on" steps only
    assert module.warmup_steps == 3  # the recipe's warm-up is restored
