"""``zoo train``: train the method of a recipe into a run directory (new, or resumed)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .output import add_set_option, say


def add_verbs(verbs: Any) -> None:
    p = verbs.add_parser(
        "train", help="train a method from a recipe",
        description="Train the method of RECIPE; writes a run directory with checkpoints, metrics, "
                    "the best model folder and the test results. Multi-GPU: torchrun --nproc-per-node N "
                    "-m xmodalzoo train RECIPE.",
    )
    p.add_argument("recipe", help="recipe YAML file")
    add_set_option(p, "override a recipe value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--resume", metavar="auto|RUN_DIR",
                   help="continue an interrupted run: 'auto' picks the latest unfinished run of this recipe")
    p.add_argument("--run-dir", metavar="DIR", help="write the run here (default: OUTPUT_DIR/NAME[-N])")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", metavar="auto|N",
                   help="intra-op threads of the trainer (train.threads; default auto: the free cores)")
    p.add_argument("--workers", metavar="auto|N",
                   help="data-loader worker processes (train.num_workers; default auto)")
    p.set_defaults(func=cmd_train)


def recipe_name(recipe: Any, path: str | Path) -> str:
    """The run name of a recipe: its ``name``, else its file's stem."""
    return recipe.name or Path(path).stem


def parallelism_overrides(args: argparse.Namespace) -> list[str]:
    """``--threads`` and ``--workers`` as the ``--set`` overrides they stand for (checked by the recipe)."""
    pairs = (("train.threads", args.threads), ("train.num_workers", args.workers))
    return [f"{key}={value}" for key, value in pairs if value is not None]


def cmd_train(args: argparse.Namespace) -> int:
    """``zoo train``: the run directory on stdout when training finished."""
    from ..recipe import load_recipe
    from ..rundir import LAST, RunDir, find_resumable, find_unstarted, next_run
    from ..train.distributed import shutdown
    from ..train.trainer import Trainer

    recipe = load_recipe(args.recipe, [*args.overrides, *parallelism_overrides(args)])
    name = recipe_name(recipe, args.recipe)
    out = Path(recipe.output_dir)
    chosen = RunDir(args.run_dir) if args.run_dir else None
    resume = False
    if args.resume == "auto":
        found = find_resumable(out, name)
        # a run killed before its first checkpoint starts again in its own folder (not NAME-2)
        unstarted = find_unstarted(out, name) if found is None and chosen is None else None
        if unstarted is not None:
            say(f"{unstarted}: killed before its first checkpoint; starting it again there", stderr=True)
        run, resume = (found, True) if found is not None else (chosen or unstarted or next_run(out, name), False)
    elif args.resume:
        run, resume = RunDir(args.resume), True
        if not run.resume_checkpoints():
            raise FileNotFoundError(f"{run}: no checkpoint to resume from ({LAST} is missing)")
    else:
        run = chosen or next_run(out, name)
    if not recipe.name:
        recipe = recipe.model_copy(update={"name": name})
    try:
        Trainer(recipe, run, resume=resume, progress=not args.quiet, argv=sys.argv).fit()
    finally:
        shutdown()
    say(f"run directory: {run}")
    return 0
