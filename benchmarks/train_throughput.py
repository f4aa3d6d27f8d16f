"""Samples per second of a training step for a recipe and device, measured through the real Trainer.

Builds everything with ``Trainer.setup()`` (the recipe's dataset, method, loss, optimizer with its
parameter groups, scheduler, sampler, loader, AMP settings), sets up epoch ``--epoch`` with
``Trainer.begin_epoch()`` (train mode, the freeze rules of that epoch, its batches: what
``Trainer.train_epoch`` does first) and times ``Trainer.train_step`` (one
per micro-batch, ``train.grad_accum`` of them) + ``Trainer.optimizer_step`` (clipping, scaler,
optimizer, scheduler): exactly what ``zoo train`` runs per optimizer step.  Two measurements:

* **model only**: micro-batches loaded once and kept in memory on the device;
* **with data loading**: batches drawn from the training loader while timing (``train.num_workers``);
* **batch module share** (methods with a training-only ``batch_module``, e.g. HREM's relation graph):
  steps with the module on and off alternate on the same in-memory batches; the share is
  1 − median(off) / median(on): what the module (forward, backward, and the loss terms it feeds)
  adds to a step.

The trainer's step counter starts at the batch module's warm-up (``--step`` to change), so the
module is on in the first two measurements.

Each optimizer step is timed on its own (CUDA synchronised); the **median** step time is reported,
with samples/s = captions per optimizer step / median, so a noisy host does not dominate.

    python benchmarks/train_throughput.py recipes/vse_shapes.yaml
    python benchmarks/train_throughput.py recipes/vse_shapes.yaml --device cuda --set train.precision=bf16
    python benchmarks/train_throughput.py recipes/vse_shapes.yaml --set data.train_size=200 --steps 3
    python benchmarks/train_throughput.py recipes/hrem_shapes.yaml                                # graph share
    python benchmarks/train_throughput.py recipes/hrem_shapes.yaml --set method.batch_module=null # without it
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from xmodalzoo.recipe import load_recipe
from xmodalzoo.train.trainer import Trainer


def timed_steps(trainer: Trainer, micro_batches: Iterable[Any], steps: int, warmup: int,
                sync: Callable[[], None]) -> tuple[list[float], list[int]]:
    """Run ``warmup + steps`` optimizer steps; the seconds and captions of each timed one."""
    accum = trainer.cfg.grad_accum
    it = iter(micro_batches)
    times, sizes = [], []
    for k in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        n = 0
        for _ in range(accum):
            batch = next(it)
            n += trainer.train_step(batch)["_n"] * trainer.dist.world_size
        trainer.optimizer_step()
        sync()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
            sizes.append(n)
    return times, sizes


def batch_module_share(trainer: Trainer, micro_batches: list[Any], steps: int,
                       sync: Callable[[], None]) -> tuple[list[float], list[float]]:
    """Seconds of ``steps`` optimizer steps with the batch module on and of as many with it off,
    alternating on/off on the same cached micro-batches (so a noisy host affects both alike)."""
    module = trainer.method.batch_module
    saved = module.warmup_steps
    accum = trainer.cfg.grad_accum
    on, off = [], []
    try:
        for k in range(steps):
            start = (k * accum) % max(1, len(micro_batches) - accum + 1)
            chunk = micro_batches[start:start + accum]
            for active, bucket in ((True, on), (False, off)):
                module.warmup_steps = 0 if active else 1 << 62  # the trainer's set_step switches it
                bucket += timed_steps(trainer, chunk, 1, 0, sync)[0]
    finally:
        module.warmup_steps = saved
    return on, off


def epochs_of_batches(trainer: Trainer, first_epoch: int) -> Iterable[Any]:
    """Training-loader batches without end: epoch after epoch (a small train split is reused)."""
    for epoch in itertools.count(first_epoch):
        trainer.set_data_epoch(epoch)
        empty = True
        for batch in trainer.loader:
            empty = False
            yield batch
        if empty:
            raise SystemExit("the training loader yields no batch")


def summary(label: str, times: list[float], sizes: list[int]) -> str:
    med = statistics.median(times)
    return (f"  {label:<20} median {med * 1000:8.1f} ms/step  {statistics.median(sizes) / med:8.1f} samples/s"
            f"   (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f} ms; {len(times)} steps)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value (repeatable), e.g. train.precision=bf16")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda (default: the recipe's train.device)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    ap.add_argument("--epoch", type=int, default=1,
                    help="1-based training epoch to imitate (e.g. 2: after a one-epoch loss warm-up)")
    ap.add_argument("--step", type=int, default=None,
                    help="optimizer steps done before timing (default: the batch module's warm-up, so it is on; else 0)")
    args = ap.parse_args()

    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    recipe = load_recipe(args.recipe, overrides)
    with tempfile.TemporaryDirectory(prefix="xmodalzoo-bench-") as tmp:
        trainer = Trainer(recipe, Path(tmp) / "run", progress=False, argv=[])
        trainer.setup()
        trainer.epoch = args.epoch - 1
        frozen = trainer.begin_epoch()  # as Trainer.train_epoch: frozen parameters get no backward
        device = trainer.device
        module = trainer.method.batch_module
        trainer.step = start_step = args.step if args.step is not None else int(getattr(module, "warmup_steps", 0) or 0)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        need = (args.warmup + args.steps) * trainer.cfg.grad_accum
        cached = [b.to(device) for b in itertools.islice(epochs_of_batches(trainer, trainer.epoch), need)]
        model_t, model_n = timed_steps(trainer, cached, args.steps, args.warmup, sync)
        share = batch_module_share(trainer, cached, args.steps, sync) if module is not None else None
        del cached
        load_t, load_n = timed_steps(trainer, epochs_of_batches(trainer, trainer.epoch + 1), args.steps,
                                     args.warmup, sync)

        cfg = trainer.cfg
        precision = cfg.precision if trainer.amp_dtype is not None else "fp32"
        print(f"{recipe.name or args.recipe}: device {device}, batch {cfg.batch_size} x grad_accum {cfg.grad_accum}, "
              f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g}, precision {precision}, num_workers {cfg.num_workers}, "
              f"torch threads {torch.get_num_threads()}, epoch {args.epoch}"
              + (f" ({len(frozen)} parameter tensors frozen)" if frozen else "")
              + (f", batch module {type(module).__name__} from step {start_step}" if module is not None else ""))
        print(summary("model step only:", model_t, model_n))
        print(summary("with data loading:", load_t, load_n))
        if share is not None:
            on, off = statistics.median(share[0]), statistics.median(share[1])
            print(f"  {'batch module share:':<20} {1 - off / on:8.1%} of a step   (median on {on * 1000:.1f} ms, "
                  f"off {off * 1000:.1f} ms, alternating; {len(share[0])} steps each)")


if __name__ == "__main__":
    main()
