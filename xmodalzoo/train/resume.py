"""What the trainer keeps in ``checkpoints/last`` and how a run resumes from it.

``checkpoints/last`` is written every epoch right after the epoch's steps and *before* validation,
so a failing validation loses no training: the epoch's record rides along as ``pending`` and a
resume finishes it (validation, log line).  Once the epoch is validated and logged it is saved
again, weights hard-linked, with ``validated: true`` in ``meta.json``, so a resume from it goes
straight to the next epoch.

When a new epoch's checkpoint replaces ``last``, the one it replaces is kept as
``checkpoints/previous`` (hard links; ``train.keep_previous_checkpoint``).  A resume whose ``last`` is
damaged (truncated, corrupt) falls back to it and says so in one line; with no good checkpoint left it
fails with one line naming the damaged file (:class:`~xmodalzoo.errors.WeightsFileError`).

``meta.json`` counts epochs from 1 (the epoch just trained), as the logs do; ``train_state.pt`` keeps
the trainer's 0-based ``epoch`` index, so checkpoints written before ``meta.json`` changed resume alike.
"""
from __future__ import annotations

from typing import Any

from . import distributed as D
from ..errors import WeightsFileError
from .checkpoint import apply_weights, keep_copy, read_checkpoint, save_checkpoint
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
    meta = {"epoch": t.epoch + 1, "step": t.step, "best_rsum": t.best_rsum,
            "validated": t.pending is None}  # the epoch's record is finished: a resume skips it
    # a new epoch's weights: the checkpoint they replace (the epoch before) is kept as `previous`
    keep = t.run.previous if not reuse_weights and t.cfg.keep_previous_checkpoint else None
    save_checkpoint(t.run.last, t.modules(), state, meta, reuse_weights=reuse_weights, keep_as=keep)


def read_last(trainer: Any) -> dict[str, Any] | None:
    """Load ``checkpoints/last`` (or the ``.last.old`` a crash between its renames left) into
    ``trainer``: weights, optimizer, scheduler, scaler, counters, history and RNG states.

    ``metrics.jsonl`` loses the lines written after the checkpoint (they are written again).
    Returns the state loaded (its ``pending`` record is the epoch still to validate), or None when
    there is no checkpoint.
    """
    t = trainer
    found = read_resumable(t.run.resume_checkpoints(),
                           lambda line: t.console.print(line, soft_wrap=True, markup=False, highlight=False))
    if found is None:
        return None
    directory, flat, state = found
    if directory != t.run.resume_checkpoints()[0] and t.dist.is_main:
        keep_copy(directory, t.run.last)  # the damaged last goes; the next saves start from a good one
    D.barrier()
    apply_weights(flat, t.modules())
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


def read_resumable(candidates: list[Any], warn: Any) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """``(directory, flat weights, training state)`` of the first readable checkpoint among
    ``candidates`` (newest first), after ``warn``-ing in one line about each damaged one passed over;
    None when there are none; a :class:`WeightsFileError` when every one is damaged."""
    first: WeightsFileError | None = None
    for directory in candidates:
        try:
            flat, state = read_checkpoint(directory)
        except WeightsFileError as exc:
            first = first or exc
            continue
        if first is not None:
            warn(f"warning: {first}; resuming from the checkpoint before it, {directory} "
                 f"(after epoch {state['epoch'] + 1})")
        return directory, flat, state
    if first is not None:
        raise WeightsFileError(first.path, f"{first.problem}; no earlier good checkpoint to resume from "
                                           "(train again without --resume)")
    return None
