"""The ``zoo`` command: validate recipes, export their schema, list and inspect what is installed.

Mistakes in user input (a bad recipe, an unknown name, a missing file) print one red message and
exit with status 2; set ``XMODALZOO_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .plugins import PluginLoadError
from .registry import KINDS, RegistryError

USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except Exception as exc:
        if _debug() or not is_user_error(exc):
            raise
        print_error(exc)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from what the user typed or pointed at (shown without a traceback)."""
    # recipe errors are checked through sys.modules: importing xmodalzoo.recipe pulls in torch,
    # which `zoo --help` must not pay for; if it was never imported, no RecipeError was raised
    recipe_errors = sys.modules.get("xmodalzoo.recipe.errors")
    if recipe_errors is not None and isinstance(exc, recipe_errors.RecipeError):
        return True
    data_errors = sys.modules.get("xmodalzoo.data.common")
    if data_errors is not None and isinstance(exc, data_errors.DataError):
        return True
    return isinstance(exc, (RegistryError, PluginLoadError, OSError))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (train/eval come from :mod:`xmodalzoo.cli_run`)."""
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="xmodalzoo: a plugin-based model zoo for image-text cross-modal retrieval.",
        epilog="Set XMODALZOO_DEBUG=1 for tracebacks; XMODALZOO_STRICT_PLUGINS=1 makes plugin failures fatal.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = verbs.add_parser("validate", help="check a recipe file",
                         description="Validate RECIPE against every installed plugin; prints a summary or the errors.")
    p.add_argument("recipe", help="recipe YAML file")
    _add_set(p, "override a recipe value, e.g. --set train.epochs=3 (repeatable)")
    p.set_defaults(func=cmd_validate)

    p = verbs.add_parser("schema", help="print the JSON Schema of recipes",
                         description="JSON Schema of recipes with every installed plugin (for editors' YAML "
                                     "language servers: '# yaml-language-server: $schema=FILE').")
    p.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE instead of stdout")
    p.set_defaults(func=cmd_schema)

    p = verbs.add_parser("list", help="list methods, components or pretrained models",
                         description="List registered methods (default), components of one kind "
                                     f"({', '.join(KINDS)}; all kinds when omitted) or pretrained models.")
    p.add_argument("what", nargs="?", default="methods", choices=["methods", "components", "pretrained"])
    p.add_argument("kind", nargs="?", help="component kind (with 'components')")
    p.add_argument("--filter", metavar="GLOB", help="only names matching GLOB, e.g. '*vse*'")
    p.set_defaults(func=cmd_list)

    p = verbs.add_parser("plugins", help="list plugins and whether they loaded",
                         description="Every plugin found: name, distribution, version, ok/failed and the error.")
    p.set_defaults(func=cmd_plugins)

    p = verbs.add_parser("info", help="describe a component and its options",
                         description="Kind, plugin, distribution, doc and config fields of the component NAME.")
    p.add_argument("name", help="registered name, e.g. vse or linear")
    p.add_argument("--kind", choices=KINDS, help="only this kind (when NAME exists in several)")
    p.set_defaults(func=cmd_info)

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
    _add_set(p, "override a dataset option, e.g. --set root=data/flickr8k (repeatable)")
    p.set_defaults(func=cmd_data_preview)
    data.set_defaults(func=lambda args: _help(data))

    from .cli_run import add_run_verbs

    add_run_verbs(verbs)
    return parser


def _add_set(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return USAGE_ERROR


# ---------------------------------------------------------------------------------------- verbs


def cmd_validate(args: argparse.Namespace) -> int:
    """``zoo validate``: OK and a summary, or (raised) the recipe's errors."""
    from rich.text import Text

    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    console = _console()
    console.print(Text.assemble(("OK", "bold green"), f" {args.recipe}"))
    for key, value in recipe_summary(recipe, default_name=Path(args.recipe).stem):
        console.print(Text.assemble(f"  {key}: ", (value, "cyan")))
    return 0


def recipe_summary(recipe: Any, default_name: str = "") -> list[tuple[str, str]]:
    """(label, value) lines that say what a recipe builds and how it trains."""
    lines = [("name", recipe.name or default_name)]
    lines += [(path or "?", name) for path, name in _component_types(recipe.data, "data")]
    lines += [(path, name) for path, name in _component_types(recipe.method, "method")]
    t = recipe.train
    lines.append(("train", f"{t.epochs} epochs, batch {t.batch_size}, {t.optimizer.name} lr {t.optimizer.lr:g}, "
                           f"{t.precision}"))
    lines.append(("eval", ", ".join(recipe.eval.protocols)))
    return lines


def _component_types(cfg: Any, path: str) -> list[tuple[str, str]]:
    """``(path, type)`` of ``cfg`` and of every component config nested in it."""
    from pydantic import BaseModel

    found = [(path, str(cfg.type))] if getattr(cfg, "type", None) is not None else []
    for name in type(cfg).model_fields if isinstance(cfg, BaseModel) else []:
        value = getattr(cfg, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                sub = f"{path}.{name}" + (f".{i}" if isinstance(value, list) else "")
                found += _component_types(item, sub)
    return found


def cmd_schema(args: argparse.Namespace) -> int:
    """``zoo schema``: the recipe JSON Schema on stdout or in a file."""
    from .recipe import recipe_json_schema

    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _console(stderr=True).print(f"schema written to {args.output}", markup=False, highlight=False)
    else:
        sys.stdout.write(text)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``zoo list``: a table of methods, components or pretrained models."""
    from .plugins import discover
    from .registry import REGISTRY

    discover()
    if args.what == "pretrained":
        return _list_pretrained(args.filter)
    if args.what == "methods":
        if args.kind:
            raise RegistryError(f"'zoo list methods' takes no kind; did you mean 'zoo list components {args.kind}'?")
        kinds = ["method"]
    else:
        if args.kind:
            REGISTRY.check_kind(args.kind)
        kinds = [args.kind] if args.kind else list(KINDS)
    entries = [e for kind in kinds for e in REGISTRY.list(kind, args.filter)]
    table = _table(f"registered {'methods' if kinds == ['method'] else 'components'}")
    show_kind = len(kinds) > 1
    if show_kind:
        table.add_column("kind", no_wrap=True)
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("plugin", no_wrap=True)
    table.add_column("description", overflow="fold")
    for e in entries:
        _add_row(table, *([e.kind] if show_kind else []), e.name, e.plugin, e.doc)
    _print_table(table, empty="nothing registered" + (f" matches {args.filter!r}" if args.filter else ""))
    return 0


def _list_pretrained(filter: str | None) -> int:
    table = _table("pretrained models")
    for col in ("name", "method", "plugin", "repository", "description"):
        table.add_column(col, no_wrap=col != "description", overflow="fold")
    try:
        from .hub.pretrained import list_pretrained
    except ImportError:
        entries: list[Any] = []
    else:
        entries = list_pretrained(filter)
    for p in entries:
        repo = p.repo_id + (f"@{p.revision}" if p.revision else "")
        _add_row(table, p.name, p.method, p.plugin, repo, p.doc)
    if filter:
        empty = f"no entry matches the filter {filter!r}"
    else:
        empty = "no pretrained models are registered by the installed plugins"
    _print_table(table, empty=empty)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """``zoo plugins``: every plugin with its distribution, version and load outcome."""
    from rich.text import Text

    from .api import plugins

    table = _table("plugins")
    for col in ("name", "distribution", "version", "status"):
        table.add_column(col, no_wrap=True)
    table.add_column("components", justify="right", no_wrap=True)
    table.add_column("pretrained", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=20)
    for p in plugins():
        status = Text("ok", style="green") if p.ok else Text("failed", style="bold red")
        counts = (str(p.components), str(p.pretrained)) if p.ok else ("-", "-")
        _add_row(table, p.name, p.distribution, p.version, status, *counts, Text(p.error, style="red"))
    _print_table(table, empty="no plugins")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``zoo info``: what a component is and a table of its options."""
    from rich.text import Text

    from .api import info

    console = _console()
    for entry in info(args.name, args.kind):
        console.print(Text.assemble((f"{entry.kind} ", "bold"), (entry.name, "bold cyan")))
        console.print(Text(f"  plugin: {entry.plugin} (distribution {entry.distribution})"))
        if entry.doc:
            console.print(Text(f"  {entry.doc}"))
        table = _table(f"options of {entry.kind} {entry.name!r}")
        for col in ("field", "type", "default"):
            table.add_column(col, no_wrap=col == "field", overflow="fold")
        table.add_column("description", overflow="fold")
        for name, type_, default, description in config_fields(entry.config):
            _add_row(table, name, type_, default, description)
        _print_table(table, empty="no options")
    return 0


def config_fields(config: Any) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) of each option of a config class, ``type`` excluded."""
    from pydantic_core import PydanticUndefined

    from .config import component_kind

    rows = []
    for name, finfo in config.model_fields.items():
        if name == "type":
            continue
        annotation = finfo.annotation
        kind = component_kind(_annotated(finfo))
        type_ = f"{kind} config (type: ...)" if kind else _type_name(annotation)
        if finfo.default_factory is not None:
            try:
                default = _short(finfo.default_factory())  # type: ignore[call-arg]
            except TypeError:
                default = "(computed)"
        elif finfo.default is PydanticUndefined:
            default = "required"
        else:
            default = _short(finfo.default)
        rows.append((name, type_, default, finfo.description or ""))
    return rows


def cmd_data_preview(args: argparse.Namespace) -> int:
    """``zoo data preview``: build a dataset from its defaults plus overrides and save a preview grid."""
    from pydantic import ValidationError

    from .config import resolve_config
    from .plugins import discover
    from .recipe import apply_overrides
    from .recipe.errors import format_validation_error
    from .registry import REGISTRY

    from .recipe.errors import RecipeError

    discover()
    entry = REGISTRY.get("dataset", args.dataset)
    if args.n < 1:
        raise RecipeError(f"--n {args.n}: expected a positive number of images")
    model = resolve_config(entry.config)
    try:
        cfg = model.model_validate({**apply_overrides({}, args.overrides), "type": entry.name})
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, model, f"dataset {entry.name!r}")) from None
    try:
        from .data.preview import preview_grid
    except ImportError as exc:
        raise RecipeError(f"zoo data preview is unavailable: {exc}") from None
    try:
        dataset = entry.factory(cfg, split=args.split)
        preview_grid(dataset, args.output, n=args.n)
    except ValueError as exc:  # e.g. an unknown split, or a dataset of region features
        raise RecipeError(f"dataset {entry.name!r}: {exc}") from exc
    _console().print(f"wrote {args.output} ({min(args.n, dataset.num_images)} images of {dataset!r})",
                     markup=False, highlight=False)
    return 0


# ---------------------------------------------------------------------------------------- output


def print_error(exc: BaseException | str) -> None:
    """Print a user error on stderr in red, one line per problem, without a traceback."""
    from rich.text import Text

    recipe_errors = sys.modules.get("xmodalzoo.recipe.errors")
    if recipe_errors is not None and isinstance(exc, recipe_errors.RecipeError):
        lines = exc.messages
    elif isinstance(exc, PluginLoadError):
        lines = [str(exc).splitlines()[0], "(set XMODALZOO_DEBUG=1 for the traceback)"]
    elif isinstance(exc, OSError) and exc.filename is not None:
        lines = [f"{exc.filename}: {exc.strerror or exc}"]
    else:
        lines = str(exc).splitlines() or [type(exc).__name__]
    console = _console(stderr=True)
    console.print(Text("error: ", style="bold red") + Text(lines[0], style="red"))
    for line in lines[1:]:
        console.print(Text(f"       {line}", style="red"))


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text(f"warning: {message}", style="yellow"))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a file has no width to respect: use a wide one rather than rich's default of 80
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 120
    return Console(file=stream, highlight=False, width=width, soft_wrap=True)  # messages stay one line


def _table(title: str) -> Any:
    from rich.table import Table

    return Table(title=title, title_justify="left", show_lines=False)


def _add_row(table: Any, *cells: Any) -> None:
    """Add a row whose plain-string cells are shown verbatim (not parsed as rich markup)."""
    from rich.text import Text

    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _print_table(table: Any, empty: str) -> None:
    console = _console()
    if table.row_count == 0:
        console.print(f"{table.title}: {empty}", markup=False)
        return
    console.print(table)


def _annotated(finfo: Any) -> Any:
    from typing import Annotated

    return Annotated[(finfo.annotation, *finfo.metadata)] if finfo.metadata else finfo.annotation


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _short(value: Any, limit: int = 60) -> str:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = json.dumps(value) if isinstance(value, (dict, list, tuple)) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _debug() -> bool:
    return os.environ.get("XMODALZOO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
