"""Quick-start training speed with torch's default threading vs the trainer's ``auto`` choice, on an
idle machine and with a second training running as load, side by side in one run.

Each measurement is a fresh ``zoo train recipes/vse_shapes.yaml`` process (thread pools are fixed
when a process starts) training ``--steps`` optimizer steps of the quick start's batches (128
captions of the 6,000-image split; val/test cut to 100 images to keep the run short) and reports
the epoch's ``samples_per_s`` from ``metrics.jsonl`` (first step included):

* **before**: ``--threads <torch's default in a fresh process> --workers 0`` without
  ``OMP_NUM_THREADS``: what ``zoo train`` did before the choice existed;
* **auto**: ``--threads auto --workers auto`` without ``OMP_NUM_THREADS``: the new default.

"loaded" runs a second ``zoo train recipes/vse_shapes.yaml`` with default threading in the
background while measuring.  The two settings alternate within a condition (``--rounds`` times)
so slow drifts of the host hit both alike.  The 1-minute load average at each start is printed too:
on a shared host "idle" means "without our second training", not an idle machine.

    python benchmarks/threads_quickstart.py                  # 12 steps, 1 round
    python benchmarks/threads_quickstart.py --steps 20 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "vse_shapes.yaml"
ZOO = str(Path(sys.executable).with_name("zoo"))
SMALL_EVAL = ["data.val_size=100", "data.test_size=100"]


def clean_env(cache: Path) -> dict[str, str]:
    """The environment without thread settings (torch's defaults apply), with a shared data cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env["XMODALZOO_CACHE"] = str(cache)
    return env


def torch_default_threads(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def train(run_dir: Path, steps: int, env: dict[str, str], extra: list[str]) -> dict:
    """One short training; its samples/s, the threads and workers it used, and the load at its start."""
    sets = ["train.epochs=1", f"train.max_steps_per_epoch={steps}", *SMALL_EVAL]
    load = os.getloadavg()[0]
    cmd = [ZOO, "train", str(RECIPE), "--quiet", "--run-dir", str(run_dir), *extra,
           *(arg for s in sets for arg in ("--set", s))]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    epoch = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "epoch"][-1]
    parallel = json.loads((run_dir / "environment.json").read_text())["parallelism"]
    return {"samples_per_s": epoch["samples_per_s"], "threads": parallel["threads"],
            "workers": parallel["workers"], "busy": parallel["busy"], "load": load}


def start_load(run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """A second quick-start training with default threading, left running; returns once it trains."""
    proc = subprocess.Popen([ZOO, "train", str(RECIPE), "--quiet", "--run-dir", str(run_dir),
                             "--set", "train.epochs=100", *(a for s in SMALL_EVAL for a in ("--set", s)), "--threads", str(torch_default_threads(env)),
                             "--workers", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run_dir / "metrics.jsonl").exists():  # its first step is logged
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the load process did not start training")
        time.sleep(1)
    time.sleep(10)  # let the load average see it
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the two settings per condition")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="threads_quickstart_") as tmp:
        tmp_path = Path(tmp)
        env = clean_env(tmp_path / "cache")
        default = torch_default_threads(env)
        settings = {"before": ["--threads", str(default), "--workers", "0"],
                    "auto": ["--threads", "auto", "--workers", "auto"]}
        print(f"quick start ({RECIPE.name}), {args.steps} steps of 128 captions; torch's default threads: "
              f"{default}; usable CPUs {len(os.sched_getaffinity(0))}", flush=True)
        train(tmp_path / "warmup", 1, env, settings["auto"])  # builds the cached dataset once
        results: dict[tuple[str, str], list[dict]] = {}
        for condition in ("idle", "loaded"):
            load = start_load(tmp_path / "load", env) if condition == "loaded" else None
            try:
                for r in range(args.rounds):
                    for name, extra in settings.items():
                        got = train(tmp_path / f"{condition}-{name}-{r}", args.steps, env, extra)
                        results.setdefault((condition, name), []).append(got)
                        print(f"  {condition:6s} {name:6s} round {r + 1}: {got['samples_per_s']:6.1f} samples/s "
                              f"(threads {got['threads']}, workers {got['workers']}, load {got['load']:.1f})",
                              flush=True)
            finally:
                if load is not None:
                    load.terminate()
                    load.wait(timeout=60)
        print(f"\n{'condition':10s} {'setting':8s} {'threads':>7s} {'workers':>7s} {'samples/s':>10s} {'load':>5s}")
        for condition in ("idle", "loaded"):
            for name in settings:
                runs = results[condition, name]
                print(f"{condition:10s} {name:8s} {runs[-1]['threads']:7d} {runs[-1]['workers']:7d} "
                      f"{statistics.median(x['samples_per_s'] for x in runs):10.1f} "
                      f"{statistics.mean(x['load'] for x in runs):5.1f}")
            before = statistics.median(x["samples_per_s"] for x in results[condition, "before"])
            auto = statistics.median(x["samples_per_s"] for x in results[condition, "auto"])
            print(f"{condition:10s} auto / before = {auto / before:.2f}x")


if __name__ == "__main__":
    main()
