"""The run directory: the one place that knows the file names of a training run.

A run of recipe ``NAME`` lives in ``OUTPUT_DIR/NAME`` (or ``NAME-2``, ``NAME-3``... when taken)::

    recipe.resolved.yaml   the recipe with every default filled in
    environment.json       versions, hardware, git commit, command line
    metrics.jsonl          one line per logged step and per epoch
    checkpoints/last/      every epoch (resume from here)
    checkpoints/previous/  the epoch before (a damaged last falls back to it)
    checkpoints/best/      the best validation RSUM
    model/                 the best weights as a model folder
    eval_results.json      the test split, evaluated once at the end (other splits: eval_results_SPLIT.json;
                           zoo eval with other data or settings: eval_results.SPLIT-TAG.json)
    DONE                   written last: the run is finished

:class:`RunDir` gives each path; :func:`next_run`, :func:`runs_of`, :func:`find_resumable` and
:func:`latest_finished` find runs of a recipe under an output directory.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import committed_dir, write_text_atomic

RESOLVED_RECIPE = "recipe.resolved.yaml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.jsonl"
LAST = "checkpoints/last"
PREVIOUS = "checkpoints/previous"
BEST = "checkpoints/best"
MODEL = "model"
DONE = "DONE"


def results_name(split: str = "test", tag: str | None = None) -> str:
    """The results file of ``split`` (beside a run's model, or beside an evaluated model folder);
    with ``tag``, that of an evaluation with other data or settings (``eval_results.test-1a2b3c4d.json``)."""
    if tag is not None:
        return f"eval_results.{split}-{tag}.json"
    return "eval_results.json" if split == "test" else f"eval_results_{split}.json"


def uncertainty_plot_name(split: str = "test") -> str:
    """The R@1-per-uncertainty-bin plot of ``split`` that ``zoo eval --uncertainty`` writes."""
    return f"uncertainty_{split}.png"


@dataclass(frozen=True, eq=False, init=False)
class RunDir:
    """The paths of one run directory (a path-like: ``open(run)``, ``Path(run)`` and ``run == path`` work)."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RunDir, os.PathLike, str)):
            return self.path == Path(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def resolved_recipe(self) -> Path:
        return self.path / RESOLVED_RECIPE

    @property
    def environment(self) -> Path:
        return self.path / ENVIRONMENT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def last(self) -> Path:
        """Where the every-epoch checkpoint is written (read it through :meth:`last_checkpoint`)."""
        return self.path / LAST

    @property
    def previous(self) -> Path:
        """Where the checkpoint ``last`` replaces is kept (hard links; see :mod:`xmodalzoo.train.resume`)."""
        return self.path / PREVIOUS

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def done(self) -> Path:
        return self.path / DONE

    def results(self, split: str = "test", tag: str | None = None) -> Path:
        return self.path / results_name(split, tag)

    def last_checkpoint(self) -> Path | None:
        """The complete ``checkpoints/last`` to resume from (its ``.old`` copy after a crash), or None."""
        return committed_dir(self.last)

    def resume_checkpoints(self) -> list[Path]:
        """The complete checkpoints to resume from, newest first: ``last`` (or its ``.old``), then ``previous``."""
        return [c for c in (committed_dir(self.last), committed_dir(self.previous)) if c is not None]

    @property
    def started(self) -> bool:
        """Whether training began writing here (the run record exists), checkpointed or not."""
        return self.resolved_recipe.is_file()

    def best_checkpoint(self) -> Path | None:
        return committed_dir(self.best)

    @property
    def finished(self) -> bool:
        return self.done.exists()

    def mark_done(self, **record: Any) -> None:
        """Write ``DONE`` (with ``record`` as JSON): the run is finished."""
        write_text_atomic(self.done, json.dumps(record))

    def require_recipe(self) -> Path:
        """The resolved recipe, or a FileNotFoundError saying this is not a run directory."""
        if not self.resolved_recipe.is_file():
            raise FileNotFoundError(f"{self.path}: not a run directory ({RESOLVED_RECIPE} is missing)")
        return self.resolved_recipe


def next_run(output_dir: str | os.PathLike[str], name: str) -> RunDir:
    """``output_dir/name``, or ``name-2``, ``name-3``... when taken."""
    output_dir = Path(output_dir)
    path, n = output_dir / name, 2
    while path.exists():
        path, n = output_dir / f"{name}-{n}", n + 1
    return RunDir(path)


def runs_of(output_dir: str | os.PathLike[str], name: str) -> list[RunDir]:
    """The run directories of recipe ``name``: ``name`` and ``name-N`` (not ``name_other``)."""
    found = [p for p in Path(output_dir).glob(f"{name}*") if p.is_dir() and
             (p.name == name or (p.name[len(name):][:1] == "-" and p.name[len(name) + 1:].isdigit()))]
    return [RunDir(p) for p in sorted(found)]


def find_resumable(output_dir: str | os.PathLike[str], name: str) -> RunDir | None:
    """The most recently checkpointed unfinished run of ``name``, or None."""
    found = {run: run.resume_checkpoints() for run in runs_of(output_dir, name) if not run.finished}
    candidates = {run: c[0] for run, c in found.items() if c}
    return max(candidates, key=lambda run: candidates[run].stat().st_mtime, default=None)


def find_unstarted(output_dir: str | os.PathLike[str], name: str) -> RunDir | None:
    """The newest unfinished run of ``name`` that has no checkpoint yet (killed in its first epoch), or
    None: ``--resume auto`` starts it again in place rather than opening ``NAME-2``."""
    found = [run for run in runs_of(output_dir, name)
             if not run.finished and run.started and not run.resume_checkpoints()]
    return max(found, key=lambda run: run.resolved_recipe.stat().st_mtime, default=None)


def latest_finished(output_dir: str | os.PathLike[str], name: str) -> RunDir | None:
    """The run of ``name`` that finished last (newest ``DONE``), or None."""
    done = [run for run in runs_of(output_dir, name) if run.finished]
    return max(done, key=lambda run: run.done.stat().st_mtime, default=None)
