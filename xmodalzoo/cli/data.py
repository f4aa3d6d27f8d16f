"""``zoo data preview``: a grid of a dataset's images with their captions."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import RecipeError
from .output import add_set_option, say


def add_verbs(verbs: Any) -> None:
    data = verbs.add_parser("data", help="dataset tools", description="Dataset tools.")
    data_verbs = data.add_subparsers(title="commands", metavar="COMMAND")
    p = data_verbs.add_parser("preview", help="save a grid of images with their captions",
                              description="Build the registered DATASET with its default options plus --set "
                                          "overrides (keys of the dataset config, e.g. --set root=data/x) and "
                                          "save a grid of images and captions.")
    p.add_argument("dataset", help="registered dataset name")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="image file to write, e.g. grid.png")
    p.add_argument("--split", default="train", help="split to preview (default: train)")
    p.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    add_set_option(p, "override a dataset option, e.g. --set root=data/flickr8k (repeatable)")
    p.set_defaults(func=cmd_data_preview)
    data.set_defaults(func=lambda args: _help(data))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_data_preview(args: argparse.Namespace) -> int:
    """``zoo data preview``: build a dataset from its defaults plus overrides and save a preview grid."""
    from pydantic import ValidationError

    from ..recipe import apply_overrides
    from ..recipe.messages import format_validation_error
    from ..registry import REGISTRY, resolve_config

    entry = REGISTRY.get("dataset", args.dataset)
    if args.n < 1:
        raise RecipeError(f"--n {args.n}: expected a positive number of images")
    try:
        cfg = entry.validate(apply_overrides({}, args.overrides))
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, resolve_config(entry.config), f"dataset {entry.name!r}")) from None
    try:
        from ..data.preview import preview_grid
    except ImportError as exc:
        raise RecipeError(f"zoo data preview is unavailable: {exc}") from None
    try:
        dataset = entry.factory(cfg, split=args.split)
        preview_grid(dataset, args.output, n=args.n)
    except ValueError as exc:  # e.g. an unknown split, or a dataset of region features
        raise RecipeError(f"dataset {entry.name!r}: {exc}") from exc
    say(f"wrote {args.output} ({min(args.n, dataset.num_images)} images of {dataset!r})")
    return 0
