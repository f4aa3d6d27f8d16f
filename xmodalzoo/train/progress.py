"""Plain progress lines for training without a terminal (nohup, CI, a log file).

A rich progress bar redraws one line in place and shows nothing useful in a file, so when the
trainer's console is not a terminal the trainer prints instead, every ``train.log_every_steps``
optimizer steps or at least every ``train.log_every_seconds`` seconds (whichever comes first), one
self-contained line::

    2026-12-02T14:50:01Z epoch 1/8 step 20/94 loss 0.4127 lr 1.00e-03 54.2 samples/s ETA epoch 1m22s, run 12m40s

and one at the end of every epoch's steps (``epoch 1/8 trained: ...``).  The ETAs extrapolate this
epoch's step rate and leave out validation and the final test evaluation.
"""
from __future__ import annotations

import datetime as _dt
import time
from typing import Callable


def utc_now() -> tuple[str, float]:
    """The wall-clock time as ISO 8601 UTC (seconds, ``Z``) and as unix seconds."""
    now = time.time()
    stamp = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return stamp, now


def duration(seconds: float) -> str:
    """``45s``, ``12m03s``, ``2h05m`` (``?`` when unknown)."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLines:
    """Decides when a plain progress line is due and formats it.

    ``emit(line)`` prints a line; ``clock`` gives monotonic seconds (injectable for tests).  With
    ``every_steps`` and ``every_seconds`` both None only the epoch-end lines are printed.
    """

    def __init__(self, emit: Callable[[str], None], *, epochs: int, steps_per_epoch: int,
                 every_steps: int | None, every_seconds: float | None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], tuple[str, float]] = utc_now) -> None:
        self.emit = emit
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.clock, self.wall = clock, wall
        self.epoch = 0
        self.started = self.last = clock()

    def start_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (counted from 1) starts now."""
        self.epoch = epoch
        self.started = self.last = self.clock()

    def due(self, step: int) -> bool:
        """Whether a line is due after step ``step`` (counted from 1 within the epoch)."""
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        return self.every_seconds is not None and self.clock() - self.last >= self.every_seconds

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> str | None:
        """After step ``step`` of the epoch: print (and return) a progress line when one is due."""
        if not self.due(step):
            return None
        self.last = self.clock()
        per_step = (self.last - self.started) / max(1, step)
        left_epoch = max(0, self.steps_per_epoch - step) * per_step
        left_run = left_epoch + max(0, self.epochs - self.epoch) * self.steps_per_epoch * per_step
        line = (f"{self.wall()[0]} epoch {self.epoch}/{self.epochs} step {step}/{self.steps_per_epoch} "
                f"loss {loss:.4f} lr {lr:.2e} {samples_per_s:.1f} samples/s "
                f"ETA epoch {duration(left_epoch)}, run {duration(left_run)}")
        self.emit(line)
        return line

    def end_epoch(self, loss: float, samples_per_s: float) -> str:
        """The line printed when the epoch's steps are done (before its validation)."""
        spent = self.clock() - self.started
        left_run = max(0, self.epochs - self.epoch) * spent
        line = (f"{self.wall()[0]} epoch {self.epoch}/{self.epochs} trained: loss {loss:.4f} "
                f"{samples_per_s:.1f} samples/s in {duration(spent)}; ETA run {duration(left_run)}")
        self.emit(line)
        return line
