"""What a training run reports: ``metrics.jsonl`` lines, progress bars and the one-line epoch summary."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import append_jsonl, truncate_jsonl
from .progress import utc_now


class MetricsLog:
    """The run's ``metrics.jsonl``: one JSON line per logged step (``kind: step``) and per epoch
    (``kind: epoch``), each stamped with the wall-clock time it was written (``time``: ISO 8601 UTC,
    ``unix_time``: seconds since the epoch).  Only the main process writes (``enabled``)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            stamp, now = utc_now()
            append_jsonl(self.path, {**record, "time": stamp, "unix_time": round(now, 3)})

    def keep_until(self, epoch: int, step: int) -> None:
        """Drop the lines written after a checkpoint of ``epoch`` epochs and ``step`` steps (a resume
        writes them again), and any line a crash cut short."""
        if self.enabled:
            truncate_jsonl(self.path, lambda x: x.get("epoch", 0) <= epoch if x.get("kind") == "epoch"
                           else x.get("step", 0) <= step)


def progress_bar(console: Any, enabled: bool) -> Any:
    """A rich progress bar: description, bar, ``n/total``, time left and a free-text ``info`` field."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"), console=console, transient=False, disable=not enabled,
    )


def epoch_summary(epoch: int, record: dict[str, Any], val_rsum: float, best_rsum: float, best_epoch: int) -> str:
    """``epoch N: loss L  val RSUM R (best B @ epoch E)`` (``epoch`` counts from 1)."""
    return (f"epoch {epoch}: loss {record.get('loss', float('nan')):.4f}  "
            f"val RSUM {val_rsum:.1f} (best {best_rsum:.1f} @ epoch {best_epoch})")
