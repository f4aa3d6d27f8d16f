"""The ``zoo train`` and ``zoo eval`` verbs."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def add_run_verbs(subparsers: argparse._SubParsersAction) -> None:
    """Add the train/eval sub-commands to the ``zoo`` parser."""
    p = subparsers.add_parser(
        "train", help="train a method from a recipe",
        description="Train the method of RECIPE; writes a run directory with checkpoints, metrics, "
                    "the best model folder and the test results. Multi-GPU: torchrun --nproc-per-node N "
                    "-m xmodalzoo train RECIPE.",
    )
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--resume", metavar="auto|RUN_DIR",
                   help="continue an interrupted run: 'auto' picks the latest unfinished run of this recipe")
    p.add_argument("--run-dir", metavar="DIR", help="write the run here (default: OUTPUT_DIR/NAME[-N])")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "eval", help="evaluate a trained run or model folder",
        description="Evaluate the model of a run directory (or a model folder plus a recipe for the data) "
                    "and write eval_results.json.",
    )
    e.add_argument("target", help="run directory, or a recipe YAML (its latest finished run is used)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--protocol", dest="protocols", action="append", choices=["full", "coco1k", "coco5k"],
                   help="evaluation protocol (repeatable; default: the recipe's eval.protocols)")
    e.add_argument("--model", metavar="DIR", help="model folder to evaluate (default: RUN_DIR/model)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (e.g. eval.max_bytes=100000000)")
    e.add_argument("--uncertainty", action="store_true",
                   help="also report R@1 per uncertainty bin (methods with uncertainty) and plot it")
    e.add_argument("--output", metavar="FILE", help="results JSON (default: RUN_DIR/eval_results[_SPLIT].json)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=run_eval)


def _recipe_name(recipe: Any, path: str) -> str:
    return recipe.name or Path(path).stem


def run_train(args: argparse.Namespace) -> int:
    from .recipe import load_recipe
    from .train.checkpoint import checkpoint_path
    from .train.trainer import Trainer, TrainingError, find_resumable, next_run_dir

    recipe = load_recipe(args.recipe, args.overrides)
    name = _recipe_name(recipe, args.recipe)
    out = Path(recipe.output_dir)
    resume = False
    if args.resume:
        if args.resume == "auto":
            found = find_resumable(out, name)
            run_dir = found if found is not None else (Path(args.run_dir) if args.run_dir else next_run_dir(out, name))
            resume = found is not None
        else:
            run_dir, resume = Path(args.resume), True
            if checkpoint_path(run_dir / "checkpoints" / "last") is None:
                raise SystemExit(_fail(f"{run_dir}: no checkpoint to resume from (checkpoints/last is missing)"))
    else:
        run_dir = Path(args.run_dir) if args.run_dir else next_run_dir(out, name)
    if not recipe.name:
        recipe = recipe.model_copy(update={"name": name})
    try:
        Trainer(recipe, run_dir, resume=resume, progress=not args.quiet, argv=sys.argv).fit()
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        from .train.distributed import shutdown

        shutdown()
    print(f"run directory: {run_dir}")
    return 0


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .eval.evaluate import encode_dataset, evaluate
    from .eval.protocols import check_protocols
    from .eval.report import keep_training_meta, results_table, write_results
    from .hub.folder import load_model
    from .method import build
    from .recipe import load_recipe
    from .train.trainer import resolve_device

    target = Path(args.target)
    if target.is_dir():
        run_dir = target
        recipe_path = run_dir / "recipe.resolved.yaml"
        if not recipe_path.is_file():
            return _fail(f"{run_dir}: not a run directory (recipe.resolved.yaml is missing)")
    elif target.is_file():
        recipe0 = load_recipe(str(target), args.overrides)
        name = _recipe_name(recipe0, str(target))
        from .train.trainer import runs_of

        runs = [p for p in runs_of(Path(recipe0.output_dir), name) if (p / "DONE").exists()]
        if not runs and not args.model:
            return _fail(f"no finished run of {name!r} under {recipe0.output_dir}/; train it first "
                         f"(zoo train {target}) or pass --model DIR")
        run_dir = max(runs, key=lambda p: (p / "DONE").stat().st_mtime) if runs else None
        recipe_path = target
    else:
        return _fail(f"{target}: no such run directory or recipe file")
    recipe = load_recipe(str(recipe_path), args.overrides)
    model_dir = Path(args.model) if args.model else (run_dir / "model" if run_dir else None)
    if model_dir is None or not (model_dir / "config.json").is_file():
        return _fail(f"{model_dir}: no model folder to evaluate (config.json missing)")
    device = resolve_device(recipe.eval.device)
    method = load_model(model_dir, device=device)
    dataset = build("dataset", recipe.data, split=args.split)
    console = Console()
    embeddings, encode_seconds, uncertainties = None, 0.0, None
    if args.uncertainty:  # the uncertainty report reads the same embeddings: encode once, here
        check_protocols(args.protocols or recipe.eval.protocols, dataset.num_images, args.split)
        start = time.perf_counter()
        embeddings = encode_dataset(method, dataset, recipe.eval, progress=not args.quiet)
        encode_seconds = time.perf_counter() - start
        try:  # fail before the evaluation when the method has no uncertainty
            uncertainties = tuple(method.uncertainty(e).cpu() for e in embeddings)
        except TypeError as exc:
            return _fail(f"--uncertainty: {exc}")
    out = evaluate(method, dataset, recipe.eval, protocols=args.protocols, progress=not args.quiet,
                   return_ranks=args.uncertainty, embeddings=embeddings)
    results, ranks = out if isinstance(out, tuple) else (out, None)
    if embeddings is not None:
        results["meta"]["encode_seconds"] = encode_seconds
        results["meta"]["seconds"] += encode_seconds
    # results go beside the model that was evaluated (never into another run's directory)
    out_dir = model_dir if args.model else run_dir
    uncertainty = (_uncertainty_report(uncertainties, ranks, out_dir, args, console)
                   if args.uncertainty else None)
    results.setdefault("meta", {}).update({"split": args.split, "model": str(model_dir)})
    console.print(results_table(results, title=f"{recipe.name or model_dir.name}: {args.split} split"))
    if uncertainty is not None:
        results["uncertainty"] = uncertainty
    output = Path(args.output) if args.output else out_dir / (
        "eval_results.json" if args.split == "test" else f"eval_results_{args.split}.json")
    keep_training_meta(results, output)  # replacing the training-time file keeps best_epoch/best_val_rsum
    write_results(results, output)
    console.print(f"results written to {output}")
    return 0


def _uncertainty_report(uncertainties: Any, ranks: Any, out_dir: Path,
                        args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """R@1 per uncertainty bin for image and caption queries (one uncertainty per image and per
    caption, in dataset order), as a table and a PNG."""
    from rich.table import Table

    from .eval.uncertainty import plot_uncertainty_bins, uncertainty_bins

    if ranks is None:
        raise SystemExit(_fail("the evaluator returned no per-query ranks"))
    u_img, u_txt = uncertainties
    r = ranks[next(iter(ranks))]  # 1-based ranks of each query, with the query's dataset index
    bins_i2t = uncertainty_bins(u_img[r["image_index"]], r["i2t"] - 1)
    bins_t2i = uncertainty_bins(u_txt[r["caption_index"]], r["t2i"] - 1)
    png = out_dir / f"uncertainty_{args.split}.png"
    plot_uncertainty_bins(bins_i2t, bins_t2i, png)
    table = Table(title="R@1 per uncertainty bin (low → high)")
    for col in ("bin", "i2t n", "i2t R@1", "t2i n", "t2i R@1"):
        table.add_column(col, justify="right")
    for k, (a, b) in enumerate(zip(bins_i2t, bins_t2i)):
        table.add_row(str(k + 1), str(a["count"]), f"{a['r1']:.1f}", str(b["count"]), f"{b['r1']:.1f}")
    console.print(table)
    console.print(f"plot written to {png}")
    return {"i2t": bins_i2t, "t2i": bins_t2i, "plot": str(png)}
