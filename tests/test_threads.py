"""Intra-op threads and data-loader workers: the choice for given cores and load (a pure function),
where the cores come from (affinity, cgroup quota, torchrun), single-threaded workers, and a real
``zoo train --threads 1 --workers 1`` that prints and records the choice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tiny import write_recipe
from xmodalzoo.data.loader import build_train_loader, single_threaded_worker
from xmodalzoo.train import threads as T
from xmodalzoo.train.config import TrainConfig

ZOO = str(Path(sys.executable).with_name("zoo"))


@pytest.mark.parametrize("kwargs, threads, workers, sources", [
    # an idle 2-core CPU: both cores compute, the main process loads the batches
    ({"cores": 2}, 2, 0, ("auto", "auto")),
    # the same with a second training running (load 1 of 2 cores): one thread, not two fighting it
    ({"cores": 2, "busy": 1.0}, 1, 0, ("auto", "auto")),
    ({"cores": 2, "busy": 0.4}, 2, 0, ("auto", "auto")),    # a light load rounds away
    ({"cores": 2, "busy": 7.0}, 1, 0, ("auto", "auto")),    # always at least one thread
    ({"cores": 4}, 3, 1, ("auto", "auto")),                 # 4 free cores: one worker, 3 threads
    ({"cores": 8, "busy": 2.0}, 5, 1, ("auto", "auto")),    # 6 free: 6 // 4 = 1 worker
    ({"cores": 8}, 6, 2, ("auto", "auto")),
    ({"cores": 64}, 60, 4, ("auto", "auto")),               # at most 4 workers on a CPU
    ({"cores": 8, "device_type": "cuda"}, 1, 7, ("auto", "auto")),    # CUDA: the CPU feeds the GPU
    ({"cores": 32, "device_type": "cuda"}, 24, 8, ("auto", "auto")),  # at most 8 workers
    ({"cores": 1, "device_type": "cuda"}, 1, 0, ("auto", "auto")),
    ({"cores": 8, "omp_num_threads": "3"}, 3, 2, ("OMP_NUM_THREADS", "auto")),  # the user's choice
    ({"cores": 8, "omp_num_threads": "0"}, 6, 2, ("auto", "auto")),   # not a thread count: ignored
    ({"cores": 8, "omp_num_threads": "x"}, 6, 2, ("auto", "auto")),
    ({"cores": 8, "threads": 4, "omp_num_threads": "3"}, 4, 2, ("setting", "auto")),
    ({"cores": 2, "workers": 3}, 1, 3, ("auto", "setting")),
    ({"cores": 8, "workers": 0}, 8, 0, ("auto", "setting")),
    ({"cores": 8, "threads": 2, "workers": 5}, 2, 5, ("setting", "setting")),
])
def test_resolved_threads_and_workers(kwargs, threads, workers, sources):
    kwargs = {"threads": "auto", "workers": "auto", **kwargs}
    got = T.resolve_parallelism(kwargs.pop("threads"), kwargs.pop("workers"), **kwargs)
    assert (got.threads, got.workers, (got.threads_from, got.workers_from)) == (threads, workers, sources)
    assert got.cores == kwargs["cores"]


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert T.cgroup_cpu_limit(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert T.cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert T.cgroup_cpu_limit(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert T.cgroup_cpu_limit(v1) is None
    assert T.cgroup_cpu_limit(tmp_path / "none") is None


def test_usable_cores_from_affinity_quota_and_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(T, "CGROUP", tmp_path)
    assert T.usable_cores() == 8
    assert T.usable_cores(processes=3) == 2  # torchrun: 3 processes on this node share the 8
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert T.usable_cores() == 3             # a 2.5-CPU quota: 3 cores' worth of threads at most


def test_busy_cores_scale_the_load_to_this_process_share(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert T.busy_cores(8) == 2.0            # a quarter of the machine busy: 2 of our 8 cores
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 0.0, 0.0))
    assert T.busy_cores(8) == 8.0            # overloaded: all of them


def test_choose_reads_omp_and_local_world_size(monkeypatch):
    monkeypatch.setattr(T, "usable_cores", lambda processes=1: 12 // processes)
    monkeypatch.setattr(T, "busy_cores", lambda cores: 0.0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (T.choose_parallelism().threads, T.choose_parallelism().cores) == (3, 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert T.choose_parallelism().threads_from == "OMP_NUM_THREADS"


def test_recipe_fields_accept_auto_and_numbers():
    assert (TrainConfig().threads, TrainConfig().num_workers) == ("auto", "auto")
    assert (TrainConfig(threads=3, num_workers=0).threads, TrainConfig(num_workers=2).num_workers) == (3, 2)
    for bad in ({"threads": 0}, {"threads": "all"}, {"num_workers": -1}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_loader_workers_run_one_thread():
    loader = build_train_loader(object.__new__(type("D", (), {"num_captions": 0})), [], image_transform=None,
                                tokenizer=None, num_workers=2)
    assert loader.worker_init_fn is single_threaded_worker
    torch.set_num_threads(2)
    single_threaded_worker(0)
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_zoo_train_threads_option_is_printed_and_recorded(tmp_path):
    recipe = write_recipe(tmp_path, train={"epochs": 1, "max_steps_per_epoch": 2})
    env = dict(os.environ, XMODALZOO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    out = subprocess.run([ZOO, "train", str(recipe), "--quiet", "--threads", "1", "--workers", "1"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "threads: 1 (setting), data workers: 1 (setting)" in out.stderr
    run = tmp_path / "runs" / "tiny"
    record = json.loads((run / "environment.json").read_text())["parallelism"]
    assert {k: record[k] for k in ("threads", "workers", "threads_from", "workers_from")} == \
        {"threads": 1, "workers": 1, "threads_from": "setting", "workers_from": "setting"}
    assert record["cores"] >= 1
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())["train"]
    assert (resolved["threads"], resolved["num_workers"]) == (1, 1)
    bad = subprocess.run([ZOO, "train", str(recipe), "--threads", "0"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and "train.threads" in bad.stderr and "Traceback" not in bad.stderr
