"""What the trainer keeps in ``checkpoints/last`` and how a run resumes from it.

``checkpoints/last`` is written every epoch right after the epoch's steps and *before* validation,
so a failing validation loses no training: the epoch's record rides along as ``pending`` and a
resume finishes it (validation, log line).  Once the epoch is validated and logged it is saved
again, weights hard-linked, with ``validated: true`` in ``meta.json``, so a resume from it goes
straight to the next epoch.
"""
from __future__ import annotations

from typing import Any

from . import distributed as D
from .checkpoint import load_checkpoint, save_checkpoint
from .rng import set_rng_state


def write_last(trainer: Any, *, reuse_weights: bool) -> None:
    """Checkpoint a :class:`~xmodalzoo.train.trainer.Trainer` into ``checkpoints/last`` (main process
    only; this module reads and sets the trainer's attributes, it does not import it); ``reuse_weights``: the
    weights are those of the checkpoint there already (see :func:`~.checkpoint.save_checkpoint`)."""
    if not trainer.dist.is_main:
        return
    t = trainer
    state = {
        "epoch": t.epoch, "step": t.step, "best_rsum": t.best_rsum, "best_epoch": t.best_epoch,
        "history": t.history, "pending": t.pending, "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict(),
    }
    meta = {"epoch": t.epoch, "step": t.step, "best_rsum": t.best_rsum,
            "validated": t.pending is None}  # the epoch's record is finished: a resume skips it
    save_checkpoint(t.run.last, t.modules(), state, meta, reuse_weights=reuse_weights)


def read_last(trainer: Any) -> dict[str, Any] | None:
    """Load ``checkpoints/last`` (or the ``.last.old`` a crash between its renames left) into
    ``trainer``: weights, optimizer, scheduler, scaler, counters, history and RNG states.

    ``metrics.jsonl`` loses the lines written after the checkpoint (they are written again).
    Returns the state loaded (its ``pending`` record is the epoch still to validate), or None when
    there is no checkpoint.
    """
    t = trainer
    state = load_checkpoint(t.run.last, t.modules(), missing_ok=True)
    if state is None:
        return None
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    t.step, t.best_rsum, t.best_epoch = state["step"], state["best_rsum"], state["best_epoch"]
    t.history = state["history"]
    t.metrics.keep_until(t.history[-1]["epoch"] if t.history else 0, t.step)
    D.barrier()
    set_rng_state(state["rng"])
    t.epoch = state["epoch"]
    return state
