"""Per-step training cost of several recipes relative to the first, measured side by side in one process.

Sets every recipe up through the real ``Trainer`` (as ``benchmarks/train_throughput.py`` does), keeps a
few training batches of each in memory, then times optimizer steps in interleaved rounds (recipe A for
``--steps-per-round`` steps, then B, then C, then A again ...), so that a change in the load of a shared
machine hits every recipe alike.  Prints each recipe's median step time and its ratio to the first.

    python benchmarks/train_step_ratio.py recipes/vse_shapes.yaml recipes/pvse_shapes.yaml recipes/dive_shapes.yaml
    python benchmarks/train_step_ratio.py recipes/vse_shapes.yaml recipes/dive_shapes.yaml --set data.train_size=1200
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import epochs_of_batches, timed_steps  # noqa: E402

from xmodalzoo.recipe import load_recipe  # noqa: E402
from xmodalzoo.train.trainer import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="+", help="recipe files; the first is the reference")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override applied to every recipe (repeatable), e.g. data.train_size=1200")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps-per-round", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8, help="training batches kept in memory per recipe")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="xmodalzoo-bench-") as tmp:
        trainers, batches = {}, {}
        for path in args.recipes:
            recipe = load_recipe(path, list(args.overrides))
            name = recipe.name or path
            trainer = Trainer(recipe, Path(tmp) / name, progress=False, argv=[])
            trainer.setup()
            trainer.epoch = 0
            trainer.begin_epoch()
            if trainer.device.type != "cpu":
                raise SystemExit("train_step_ratio.py times CPU steps; use train_throughput.py for a GPU")
            trainers[name] = trainer
            batches[name] = list(itertools.islice(epochs_of_batches(trainer, 0), args.batches))
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for name, trainer in trainers.items():  # warm-up, untimed
            timed_steps(trainer, iter(batches[name]), 0, 2, lambda: None)
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                seconds, _ = timed_steps(trainer, itertools.cycle(batches[name]), args.steps_per_round, 0,
                                         lambda: None)
                times[name] += seconds
    reference = statistics.median(next(iter(times.values())))
    print(f"CPU, torch threads {torch.get_num_threads()}, {args.rounds} interleaved rounds x "
          f"{args.steps_per_round} steps per recipe")
    for name, seconds in times.items():
        med = statistics.median(seconds)
        cfg = trainers[name].cfg
        print(f"  {name:<16} median {med * 1000:7.0f} ms/step  {med / reference:5.2f}x   "
              f"(batch {cfg.batch_size}, min {min(seconds) * 1000:.0f}, max {max(seconds) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
