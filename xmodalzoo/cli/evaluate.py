"""``zoo eval``: evaluate a run's model (or any model folder) on a split of the recipe's data."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from .output import say
from .train import recipe_name


def add_verbs(verbs: Any) -> None:
    e = verbs.add_parser(
        "eval", help="evaluate a trained run or model folder",
        description="Evaluate the model of a run directory with the run's own resolved recipe, or a model "
                    "folder or pretrained model (its recipe.yaml, or --recipe, gives the data), and write the "
                    "results JSON.",
    )
    e.add_argument("target", help="run directory, recipe YAML (its latest finished run is used), model folder, "
                                  "pretrained name or hf-hub:ORG/NAME")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--protocol", dest="protocols", action="append", choices=["full", "coco1k", "coco5k"],
                   help="evaluation protocol (repeatable; default: the recipe's eval.protocols)")
    e.add_argument("--recipe", metavar="FILE", help="recipe whose data and eval settings to use for a model folder "
                   "or pretrained model (default: the folder's recipe.yaml)")
    e.add_argument("--model", metavar="DIR", help="model folder to evaluate (default: RUN_DIR/model)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (e.g. eval.max_bytes=100000000)")
    e.add_argument("--uncertainty", action="store_true",
                   help="also report R@1 per uncertainty bin (methods with uncertainty) and plot it")
    e.add_argument("--output", metavar="FILE",
                   help="results JSON (default: RUN_DIR/eval_results.json with the run's own data and settings, "
                        "else RUN_DIR/eval_results.SPLIT-TAG.json; never over the training results)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_eval)


def find_target(args: argparse.Namespace) -> tuple[Any, Any, Path, Path]:
    """``(run or None, recipe, model folder, results folder)`` that ``zoo eval TARGET [--model DIR] [--set ...]``
    means.

    The recipe of a run is the run's own resolved recipe (with its training ``--set`` overrides),
    then the overrides given to ``zoo eval``; a recipe TARGET only names the run, unless ``--model``
    evaluates a folder with the recipe's data. A model folder, pretrained name or ``hf-hub:`` source is
    evaluated with its ``recipe.yaml`` (or ``--recipe``); its results go beside a local folder, or into
    the working directory for a downloaded one (never into the Hugging Face cache).
    """
    from ..api import resolve_source
    from ..hub.folder import CONFIG, RECIPE
    from ..recipe import load_recipe
    from ..rundir import RunDir, latest_finished

    target = Path(args.target)
    if target.is_dir() and not (target / CONFIG).is_file():
        run = RunDir(target)
        recipe = load_recipe(str(run.require_recipe()), args.overrides)
    elif target.is_file():
        recipe = load_recipe(str(target), args.overrides)
        name = recipe_name(recipe, target)
        run = latest_finished(recipe.output_dir, name)
        if run is None and not args.model:
            raise UserError(f"no finished run of {name!r} under {recipe.output_dir}/; train it first "
                            f"(zoo train {target}) or pass --model DIR")
        if run is not None and not args.model:
            file_data = recipe.data
            recipe = load_recipe(str(run.require_recipe()), args.overrides)
            if file_data != recipe.data:
                say(f"note: evaluating {run} on the data it was trained with ({run.resolved_recipe.name}), "
                    f"not the data: of {target}; pass --model {run.model} to use that file's data", stderr=True)
    else:  # a model folder, a pretrained name or hf-hub:ORG/NAME
        folder = resolve_source(args.target)
        recipe_path = Path(args.recipe) if args.recipe else folder / RECIPE
        if not recipe_path.is_file():
            raise UserError(f"{folder} has no {RECIPE} to take the data from: pass --recipe FILE")
        recipe = load_recipe(str(recipe_path), args.overrides)
        return None, recipe, folder, (folder if target.is_dir() else Path.cwd())
    model_dir = Path(args.model) if args.model else (run.model if run is not None else None)
    if model_dir is None or not (model_dir / CONFIG).is_file():
        raise UserError(f"{model_dir}: no model folder to evaluate ({CONFIG} missing)")
    # results go beside the model that was evaluated (never into another run's directory)
    return run, recipe, model_dir, (model_dir if args.model or run is None else run.path)


def results_path(args: argparse.Namespace, run: Any, recipe: Any, out_dir: Path) -> tuple[Path, bool]:
    """Where the results go, and whether they replace the run's own results file of that split
    (same model, data and settings as training): those keep its training-only meta.

    Another model, split, data or setting gives ``eval_results.SPLIT-TAG.json`` in the run folder
    (TAG: :func:`~xmodalzoo.eval.settings.settings_tag`), so the training results are never replaced;
    ``--output`` may not name the run's results file then either.
    """
    from ..eval.settings import differences, evaluation_settings, settings_tag
    from ..recipe import load_recipe
    from ..rundir import results_name

    settings = evaluation_settings(recipe, args.split, args.protocols)
    same = False
    if run is not None and not args.model:
        trained = evaluation_settings(load_recipe(str(run.resolved_recipe)), args.split)
        changed = differences(settings, trained)
        same = not changed
        if args.output:
            output = Path(args.output)
            if changed and output.resolve() == run.results(args.split).resolve():
                raise UserError(f"--output {output}: that file holds the run's own {args.split} results; "
                                f"evaluating with other {', '.join(changed)} writes elsewhere (drop --output "
                                f"or name another file)")
            return output, same
        return (run.results(args.split) if same else run.results(args.split, settings_tag(settings))), same
    if args.output:
        return Path(args.output), False
    return out_dir / results_name(args.split), False


def cmd_eval(args: argparse.Namespace) -> int:
    """``zoo eval``: a results table, and the results JSON beside the model that was evaluated."""
    from rich.console import Console

    from ..devices import resolve_device
    from ..eval.evaluate import encode_dataset, evaluate
    from ..eval.protocols import check_protocols
    from ..eval.report import keep_training_meta, results_table, write_results
    from ..hub.folder import load_model
    from ..registry import REGISTRY

    run, recipe, model_dir, out_dir = find_target(args)
    output, replaces_own = results_path(args, run, recipe, out_dir)
    method = load_model(model_dir, device=resolve_device(recipe.eval.device))
    dataset = REGISTRY.build("dataset", recipe.data, split=args.split)
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
            raise UserError(f"--uncertainty: {exc}") from None
    out = evaluate(method, dataset, recipe.eval, protocols=args.protocols, progress=not args.quiet,
                   return_ranks=args.uncertainty, embeddings=embeddings)
    results, ranks = out if isinstance(out, tuple) else (out, None)
    if embeddings is not None:
        results["meta"]["encode_seconds"] = encode_seconds
        results["meta"]["seconds"] += encode_seconds
    uncertainty = uncertainty_report(uncertainties, ranks, out_dir, args.split, console) if args.uncertainty else None
    results.setdefault("meta", {}).update({"split": args.split, "model": str(model_dir)})
    console.print(results_table(results, title=f"{recipe.name or model_dir.name}: {args.split} split"))
    if uncertainty is not None:
        results["uncertainty"] = uncertainty
    if replaces_own or not args.output:  # same settings: keeps best_epoch/best_val_rsum and uncertainty
        keep_training_meta(results, output)
    write_results(results, output)
    console.print(f"results written to {output}")
    return 0


def uncertainty_report(uncertainties: Any, ranks: Any, out_dir: Path, split: str, console: Any) -> dict[str, Any]:
    """R@1 per uncertainty bin for image and caption queries (one uncertainty per image and per
    caption, in dataset order), as a table and a PNG."""
    from rich.table import Table

    from ..eval.uncertainty import plot_uncertainty_bins, uncertainty_bins
    from ..rundir import uncertainty_plot_name

    if ranks is None:
        raise UserError("the evaluator returned no per-query ranks")
    u_img, u_txt = uncertainties
    r = ranks[next(iter(ranks))]  # 1-based ranks of each query, with the query's dataset index
    bins_i2t = uncertainty_bins(u_img[r["image_index"]], r["i2t"] - 1)
    bins_t2i = uncertainty_bins(u_txt[r["caption_index"]], r["t2i"] - 1)
    png = out_dir / uncertainty_plot_name(split)
    plot_uncertainty_bins(bins_i2t, bins_t2i, png)
    table = Table(title="R@1 per uncertainty bin (low → high)")
    for col in ("bin", "i2t n", "i2t R@1", "t2i n", "t2i R@1"):
        table.add_column(col, justify="right")
    for k, (a, b) in enumerate(zip(bins_i2t, bins_t2i)):
        table.add_row(str(k + 1), str(a["count"]), f"{a['r1']:.1f}", str(b["count"]), f"{b['r1']:.1f}")
    console.print(table)
    console.print(f"plot written to {png}")
    return {"i2t": bins_i2t, "t2i": bins_t2i, "plot": str(png)}
