"""Samples per second of a training step (forward, loss, backward, optimizer) for a recipe and device.

Builds the recipe's method, loss, sampler and training loader exactly as ``zoo train`` does, runs
``--warmup`` steps, then times ``--steps`` steps: once with data loading included and once on batches
already in memory (the model's own speed).

    python benchmarks/train_throughput.py recipes/vse_shapes.yaml
    python benchmarks/train_throughput.py recipes/vse_shapes.yaml --device cuda --set train.precision=bf16
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch

from xmodalzoo.data.loader import build_train_loader
from xmodalzoo.losses.base import LossContext
from xmodalzoo.method import build, build_loss
from xmodalzoo.recipe import load_recipe
from xmodalzoo.train.trainer import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    recipe = load_recipe(args.recipe, args.overrides)
    device = resolve_device(args.device)
    data = build("dataset", recipe.data, split="train")
    torch.manual_seed(recipe.seed)
    method = build("method", recipe.method, train_captions=list(data.captions)).to(device).train()
    loss_fn = build_loss(recipe.method).to(device)
    params = list(method.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.train.optimizer.lr)
    sampler = build("sampler", recipe.train.sampler, dataset=data, batch_size=recipe.train.batch_size, seed=0)
    loader = build_train_loader(data, sampler, image_transform=method.image_transform(train=True),
                                tokenizer=method.tokenizer, num_workers=recipe.train.num_workers)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.train.precision) if device.type == "cuda" else None

    def step(batch) -> int:
        batch = batch.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            img, txt, extras = method(batch)
            out = loss_fn(img, txt, LossContext(batch.positives(), method.similarity, 1, 0, extras))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return len(batch.texts)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = list(itertools.islice(iter(loader), args.warmup + args.steps))
    for b in batches[: args.warmup]:
        step(b)
    sync()
    t0 = time.perf_counter()
    n = sum(step(b) for b in batches[args.warmup :])
    sync()
    model_rate = n / (time.perf_counter() - t0)

    sampler.set_epoch(1)
    t0 = time.perf_counter()
    n = 0
    for b in itertools.islice(iter(loader), args.steps):
        n += step(b)
    sync()
    loader_rate = n / (time.perf_counter() - t0)
    name = recipe.name or args.recipe
    print(f"{name}: device {device}, batch {recipe.train.batch_size}, precision {recipe.train.precision}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  model step only:        {model_rate:8.1f} samples/s")
    print(f"  with data loading:      {loader_rate:8.1f} samples/s")


if __name__ == "__main__":
    main()
