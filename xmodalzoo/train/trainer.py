"""The one trainer every method uses: build from a recipe, fit, checkpoint, resume, select on val, test once."""
from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..batch_module import set_batch_module_step
from ..data.batch import Batch
from ..devices import resolve_device
from ..errors import TrainingError
from ..losses.base import Loss, LossContext
from ..method import Method, build_loss
from ..registry import REGISTRY
from ..rundir import RunDir
from . import distributed as D
from .batches import training_batches
from .checkpoint import WEIGHTS, load_weights, save_checkpoint
from .log import MetricsLog, epoch_summary, progress_bar
from .optim import apply_freeze, build_optimizer, check_patterns, trainable_parameters
from .precision import mixed_precision, step_scheduler
from .resume import read_last, write_last
from .rng import seed_everything
from .progress import ProgressLines
from .schedule import build_scheduler
from .threads import apply_parallelism, choose_parallelism


class Trainer:
    """Trains ``recipe.method`` on ``recipe.data`` as ``recipe.train`` says.

    Writes into ``run_dir`` (see :class:`~xmodalzoo.rundir.RunDir`): the run record, ``metrics.jsonl``,
    ``checkpoints/last`` every epoch (before validation; see :mod:`xmodalzoo.train.resume`),
    ``checkpoints/best`` (best validation RSUM), ``model/`` (the best weights as a model folder),
    ``eval_results.json`` (the test split, evaluated once at the end) and ``DONE``.
    """

    def __init__(self, recipe: Any, run_dir: str | Path | RunDir, *, resume: bool = False, progress: bool = True,
                 argv: list[str] | None = None, console: Any = None) -> None:
        self.recipe = recipe
        self.cfg = recipe.train
        self.run = RunDir(run_dir)
        self.run_dir = self.run.path
        self.resume = resume
        self.progress = progress
        self.argv = argv if argv is not None else sys.argv
        self.dist = D.init_distributed(self.cfg.device)
        self.device = resolve_device(self.cfg.device, self.dist.local_rank if self.dist.enabled else None)
        # chosen before any heavy work, so the load average is other processes' load (threads.py)
        self.parallel = choose_parallelism(self.cfg.threads, self.cfg.num_workers, self.device.type)
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, quiet=not self.dist.is_main)
        self.console = console
        self.metrics = MetricsLog(self.run.metrics, enabled=self.dist.is_main)
        self.test_data: Any = None  # the test split: built (and checked) by fit() on the main process only

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        r, cfg = self.recipe, self.cfg
        apply_parallelism(self.parallel)
        seed_everything(r.seed)
        self.train_data = REGISTRY.build("dataset", r.data, split="train")
        self.val_data = REGISTRY.build("dataset", r.data, split="val")
        self.method: Method = REGISTRY.build("method", r.method, train_captions=list(self.train_data.captions))
        if cfg.sync_batchnorm and self.dist.enabled:
            if self.device.type != "cuda":
                raise TrainingError(
                    f"train.sync_batchnorm needs CUDA devices (torch's SyncBatchNorm does not run on {self.device.type}); "
                    "set it to false: BatchNorm statistics are then computed per process"
                )
            self.method = nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.loss: Loss = build_loss(r.method)
        self.method.to(self.device)
        self.loss.to(self.device)
        self.forward = torch.compile(self.method) if cfg.compile else self.method
        self.named = trainable_parameters(self.method, self.loss)
        names = [n for n, _ in self.named]
        check_patterns(names, [g.pattern for g in cfg.param_groups], "train.param_groups")
        check_patterns(names, [f.pattern for f in cfg.freeze], "train.freeze")
        self.optimizer = build_optimizer(self.named, cfg.optimizer, cfg.param_groups)
        self.sampler, self.loader = training_batches(r, self.train_data, self.method, self.dist, self.parallel.workers)
        batches = len(self.sampler)
        if cfg.max_steps_per_epoch is not None:
            batches = min(batches, cfg.max_steps_per_epoch * cfg.grad_accum)
        self.batches_per_epoch = batches
        self.steps_per_epoch = max(1, batches // cfg.grad_accum)
        self.scheduler = build_scheduler(self.optimizer, cfg.scheduler, self.steps_per_epoch, cfg.epochs)
        self.amp_dtype, self.scaler = mixed_precision(cfg.precision, self.device, self.console)
        self.epoch, self.step, self.best_rsum, self.best_epoch = 0, 0, -math.inf, -1
        self.history: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None  # this epoch's record until it is validated and logged
        # made only now that every part is built: a bad setting (a pattern matching nothing) leaves no folder
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def modules(self) -> dict[str, nn.Module]:
        return {"method": self.method, "loss": self.loss}

    # ----------------------------------------------------------- checkpoints
    def save_last(self) -> None:
        """Checkpoint the epoch just trained (its record, not yet validated, as ``pending``)."""
        write_last(self, reuse_weights=False)

    def save_validated(self) -> None:
        """Checkpoint again once the epoch's record is finished (validated when due, logged): the same
        weights (hard-linked), the training state after validation (its RNG included), no ``pending``."""
        write_last(self, reuse_weights=True)

    def restore(self) -> bool:
        """Resume from ``checkpoints/last`` if present (an epoch saved before its validation is
        validated now, and saved again, finished); returns whether it did."""
        state = read_last(self)
        if state is None:
            return False
        pending = state.get("pending")
        self.console.print(f"resuming {self.run_dir} after epoch {state['epoch'] + 1} (step {self.step})"
                           + ("; validating that epoch first" if pending else ""))
        if pending is not None:
            self.end_epoch(pending)
            self.save_validated()
        self.epoch = state["epoch"] + 1
        return True

    # ---------------------------------------------------------------- training
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One micro-batch: forward, loss over the (global) batch, backward."""
        batch = batch.to(self.device, non_blocking=True)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else contextlib.nullcontext())
        set_batch_module_step(self.method.batch_module, self.step)
        with autocast:
            img, txt, extras = self.forward(batch)
            positives = batch.positives()
            if self.dist.enabled:  # the global batch, each image once (as one process would have it)
                img, txt, positives = D.gather_batch(img, txt, batch, self.dist.world_size)
            ctx = LossContext(positives, self.method.similarity, self.epoch, self.step, extras)
            out = self.loss(img, txt, ctx)
        loss = out.loss.float()
        value = loss.item()
        if not math.isfinite(value):
            kept = self.run.last_checkpoint()
            raise TrainingError(
                f"non-finite loss ({value}) at step {self.step + 1} (epoch {self.epoch + 1}); "
                f"training stopped. "
                + (f"The last good checkpoint is kept at {kept}." if kept else "No checkpoint was written yet.")
                + " Lower the learning rate, enable grad_clip, or use fp32."
            )
        self.scaler.scale(loss / self.cfg.grad_accum).backward()
        terms = {k: float(v) for k, v in out.terms.items()}
        return {"loss": value, **terms, "_n": int(batch.texts.ids.shape[0])}

    def optimizer_step(self) -> None:
        params = [p for _, p in self.named if p.grad is not None]
        if self.dist.enabled:
            D.all_reduce_grads(params, self.dist.world_size)
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip is not None and params:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        step_scheduler(self.scheduler)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def set_data_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` (the sampler, and this process's shard of it)."""
        self.sampler.prepare_epoch(epoch, self.method)
        self.sampler.set_epoch(epoch)
        if self.loader.batch_sampler is not self.sampler and hasattr(self.loader.batch_sampler, "set_epoch"):
            self.loader.batch_sampler.set_epoch(epoch)

    def begin_epoch(self) -> list[str]:
        """The set-up of epoch ``self.epoch``: train mode, its freeze rules, its batches; the frozen names."""
        self.method.train()
        self.loss.train()
        frozen = apply_freeze(self.named, self.cfg.freeze, self.epoch)
        if frozen and not (self.history and self.history[-1].get("frozen")):  # newly frozen
            self.console.print(f"epoch {self.epoch + 1}: {len(frozen)} parameter tensors frozen")
        self.set_data_epoch(self.epoch)
        return frozen

    def train_epoch(self) -> dict[str, float]:
        frozen = self.begin_epoch()
        totals: dict[str, float] = {}
        count, seen, t0 = 0, 0, time.perf_counter()
        window: list[dict[str, float]] = []
        lines = self.plain_progress()
        progress = progress_bar(self.console, self.progress and self.dist.is_main and lines is None)
        task = progress.add_task(f"epoch {self.epoch + 1}/{self.cfg.epochs}", total=self.steps_per_epoch, info="")
        self.optimizer.zero_grad(set_to_none=True)
        with progress:
            for i, batch in enumerate(self.loader):
                if i >= self.steps_per_epoch * self.cfg.grad_accum:
                    break
                logs = self.train_step(batch)
                seen += logs.pop("_n") * self.dist.world_size
                window.append(logs)
                if (i + 1) % self.cfg.grad_accum:
                    continue
                self.optimizer_step()
                step_logs = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                window.clear()
                for k, v in step_logs.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
                rate = seen / max(1e-9, time.perf_counter() - t0)
                lr = self.optimizer.param_groups[-1]["lr"]
                progress.update(task, advance=1, info=f"loss {step_logs['loss']:.4f}  lr {lr:.2e}  {rate:.0f} samples/s")
                if lines is not None:
                    lines.step(count, step_logs["loss"], lr, rate)
                if self.step % self.cfg.log_every == 0 or count == 1:
                    self.metrics.write({"kind": "step", "epoch": self.epoch + 1, "step": self.step, "lr": lr,
                                        "samples_per_s": rate, **step_logs})
        means = {k: v / max(1, count) for k, v in totals.items()}
        means["samples_per_s"] = seen / max(1e-9, time.perf_counter() - t0)
        means["frozen"] = len(frozen)
        if lines is not None:
            lines.end_epoch(means.get("loss", math.nan), means["samples_per_s"])
        return means

    def plain_progress(self) -> ProgressLines | None:
        """Progress lines for this epoch when the console is not a terminal (else the progress bar)."""
        if not (self.progress and self.dist.is_main) or self.console.is_terminal:
            return None
        lines = ProgressLines(lambda line: self.console.print(line, markup=False, highlight=False, soft_wrap=True),
                              epochs=self.cfg.epochs, steps_per_epoch=self.steps_per_epoch,
                              every_steps=self.cfg.log_every_steps, every_seconds=self.cfg.log_every_seconds)
        lines.start_epoch(self.epoch + 1)
        return lines

    # -------------------------------------------------------------- evaluation
    def validate(self) -> dict[str, Any]:
        from ..eval.evaluate import evaluate

        return evaluate(self.method, self.val_data, self.recipe.eval, protocols=["full"],
                        progress=self.progress and self.dist.is_main)

    def check_test_split(self) -> Any:
        """Build the test split and check it can serve ``eval.protocols``."""
        from ..eval.protocols import check_protocols

        test = REGISTRY.build("dataset", self.recipe.data, split="test")
        check_protocols(self.recipe.eval.protocols, test.num_images, "test")
        return test

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Validate epoch ``self.epoch`` when due (main process), keep the best, log the epoch's record."""
        epoch = self.epoch
        if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
            if self.dist.is_main:
                val = self.validate()["full"]
                record.update({f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))})
                if val["rsum"] > self.best_rsum:
                    self.best_rsum, self.best_epoch = val["rsum"], epoch + 1
                    save_checkpoint(self.run.best, {"method": self.method}, {}, {"epoch": epoch + 1, "val": val})
                self.console.print(epoch_summary(epoch + 1, record, val["rsum"], self.best_rsum, self.best_epoch))
            D.barrier()
        self.history.append(record)
        self.metrics.write(record)
        self.pending = None

    def fit(self) -> dict[str, Any]:
        """Train all epochs (resuming if asked), then evaluate the best weights on the test split once.

        The test split is built and checked against ``eval.protocols`` first, so a mismatch (e.g.
        ``coco5k`` on a 1,000-image split) fails before training, not after it.
        """
        # only the main process evaluates the test split, so only it builds (and keeps) it; its error,
        # if any, is sent to the other processes, which raise it too instead of waiting in a collective
        error = None
        if self.dist.is_main:
            try:
                self.test_data = self.check_test_split()
            except Exception as exc:
                error = exc
        D.raise_everywhere(error, self.dist)
        created = not self.run_dir.exists()
        try:
            self.setup()
            self.start()
            if self.resume:
                self.restore()
            self.train_epochs()
        except BaseException:
            # a run that failed before its first step leaves no folder behind
            if created and self.dist.is_main and not self.resume and getattr(self, "step", 0) == 0:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        results = self.finish() if self.dist.is_main else {}
        D.barrier()
        return results

    def start(self) -> None:
        """Write the run record; a fresh start (not a resume) in a folder that a run killed before its
        first checkpoint left drops that run's metrics lines."""
        if not self.dist.is_main:
            return
        # after set-up: a recipe that fails there shows only its one error line
        self.console.print(self.parallel.describe(), markup=False, highlight=False, soft_wrap=True)
        from .record import write_run_record

        if not self.resume:
            self.metrics.keep_until(0, 0)
        write_run_record(self.run, self.recipe, self.argv, str(self.device), self.parallel.as_record())

    def train_epochs(self) -> None:
        """Train from epoch ``self.epoch`` to the last, checkpointing and validating each."""
        for epoch in range(self.epoch, self.cfg.epochs):
            self.epoch = epoch
            train_logs = self.train_epoch()
            # saved before validation: a failing validation loses no training; resume validates it
            self.pending = {"kind": "epoch", "epoch": epoch + 1, "step": self.step, **train_logs}
            self.save_last()
            D.barrier()
            self.end_epoch(self.pending)
            self.save_validated()

    def finish(self) -> dict[str, Any]:
        """Load the best validation weights, export the model folder, evaluate the test split once."""
        from ..eval.evaluate import evaluate
        from ..eval.report import results_table, to_jsonable, write_results
        from ..hub.folder import save_model

        best = self.run.best_checkpoint()
        if best is not None:
            load_weights(best / WEIGHTS, {"method": self.method})
        results = evaluate(self.method, self.test_data, self.recipe.eval, progress=self.progress)
        results.setdefault("meta", {}).update(
            {"split": "test", "best_epoch": self.best_epoch, "best_val_rsum": self.best_rsum}
        )
        write_results(results, self.run.results("test"))
        recipe_text = self.run.resolved_recipe.read_text() if self.run.resolved_recipe.exists() else None
        save_model(self.method, self.run.model, name=self.recipe.name or self.run.name,
                   load_name=str(self.run.model), results=to_jsonable(results), recipe=recipe_text,
                   datasets=[str(getattr(self.recipe.data, "type", "unknown"))])
        self.run.mark_done(best_epoch=self.best_epoch)
        self.console.print(results_table(results, title=f"{self.recipe.name or 'run'}: test split"))
        return results
