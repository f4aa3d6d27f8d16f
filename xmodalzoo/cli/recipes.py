"""``zoo validate`` and ``zoo schema``: check a recipe, export the JSON Schema of recipes."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .output import add_set_option, make_console, say


def add_verbs(verbs: Any) -> None:
    p = verbs.add_parser("validate", help="check a recipe file",
                         description="Validate RECIPE against every installed plugin (options and the contracts "
                                     "between the method's parts); prints a summary or the errors.")
    p.add_argument("recipe", help="recipe YAML file")
    add_set_option(p, "override a recipe value, e.g. --set train.epochs=3 (repeatable)")
    p.set_defaults(func=cmd_validate)

    p = verbs.add_parser("schema", help="print the JSON Schema of recipes",
                         description="JSON Schema of recipes with every installed plugin (for editors' YAML "
                                     "language servers: '# yaml-language-server: $schema=FILE').")
    p.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE instead of stdout (missing folders are created)")
    p.set_defaults(func=cmd_schema)


def cmd_validate(args: argparse.Namespace) -> int:
    """``zoo validate``: OK and a summary, or (raised) the recipe's errors."""
    from rich.text import Text

    from ..recipe import load_recipe

    from ..errors import RecipeError
    from ..recipe.params import parameter_pattern_problems

    recipe = load_recipe(args.recipe, args.overrides)
    problems = parameter_pattern_problems(recipe, args.recipe)
    if problems:
        raise RecipeError(problems)
    console = make_console()
    console.print(Text.assemble(("OK", "bold green"), f" {args.recipe}"))
    for key, value in recipe_summary(recipe, default_name=Path(args.recipe).stem):
        console.print(Text.assemble(f"  {key}: ", (value, "cyan")))
    if problems is None:
        say("  train.param_groups/freeze patterns: not checked (the method needs files or downloads to be "
            "built); zoo train checks them before creating the run folder")
    return 0


def recipe_summary(recipe: Any, default_name: str = "") -> list[tuple[str, str]]:
    """(label, value) lines that say what a recipe builds and how it trains."""
    lines = [("name", recipe.name or default_name)]
    lines += [(path or "?", name) for path, name in component_types(recipe.data, "data")]
    lines += [(path, name) for path, name in component_types(recipe.method, "method")]
    t = recipe.train
    lines.append(("train", f"{t.epochs} epochs, batch {t.batch_size}, {t.optimizer.name} lr {t.optimizer.lr:g}, "
                           f"{t.precision}"))
    lines.append(("eval", ", ".join(recipe.eval.protocols)))
    return lines


def component_types(cfg: Any, path: str) -> list[tuple[str, str]]:
    """``(path, type)`` of ``cfg`` and of every component config nested in it."""
    from pydantic import BaseModel

    found = [(path, str(cfg.type))] if getattr(cfg, "type", None) is not None else []
    for name in type(cfg).model_fields if isinstance(cfg, BaseModel) else []:
        value = getattr(cfg, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                sub = f"{path}.{name}" + (f".{i}" if isinstance(value, list) else "")
                found += component_types(item, sub)
    return found


def cmd_schema(args: argparse.Namespace) -> int:
    """``zoo schema``: the recipe JSON Schema on stdout or in a file."""
    from ..recipe import recipe_json_schema

    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if args.output:
        from ..files import write_text_atomic

        write_text_atomic(Path(args.output), text)  # creates missing folders (e.g. .vscode/)
        say(f"schema written to {args.output}", stderr=True)
    else:
        sys.stdout.write(text)
    return 0
