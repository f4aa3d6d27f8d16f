"""``zoo list``, ``zoo plugins`` and ``zoo info``: what is installed, and what each part's options are."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import RegistryError
from ..registry import KINDS
from .output import add_row, make_console, make_table, print_table, short


def add_verbs(verbs: Any) -> None:
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

    p = verbs.add_parser("info", help="describe a component or a pretrained model",
                         description="A pretrained model NAME: its source, revision, metrics, files and whether "
                                     "it is cached. A component NAME: its kind, plugin, distribution, doc, "
                                     "contract and config fields.")
    p.add_argument("name", help="pretrained name (e.g. dive-coco) or registered component (e.g. vse, linear)")
    p.add_argument("--kind", choices=KINDS, help="only this kind (when NAME exists in several)")
    p.set_defaults(func=cmd_info)


def cmd_list(args: argparse.Namespace) -> int:
    """``zoo list``: a table of methods, components or pretrained models."""
    from ..registry import REGISTRY

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
    table = make_table(f"registered {'methods' if kinds == ['method'] else 'components'}")
    show_kind = len(kinds) > 1
    if show_kind:
        table.add_column("kind", no_wrap=True)
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("plugin", no_wrap=True)
    table.add_column("description", overflow="fold")
    for e in entries:
        add_row(table, *([e.kind] if show_kind else []), e.name, e.plugin, e.doc)
    print_table(table, empty="nothing registered" + (f" matches {args.filter!r}" if args.filter else ""))
    return 0


def _list_pretrained(filter: str | None) -> int:
    from ..hub.pretrained import list_pretrained

    table = make_table("pretrained models")
    for col in ("name", "method", "plugin", "weights", "description"):
        table.add_column(col, no_wrap=col != "description", overflow="fold")
    for p in list_pretrained(filter):
        add_row(table, p.name, p.method, p.plugin, p.location, p.doc)
    if filter:
        empty = f"no entry matches the filter {filter!r}"
    else:
        empty = "no pretrained models are registered by the installed plugins"
    print_table(table, empty=empty)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """``zoo plugins``: every plugin with its distribution, version and load outcome."""
    from rich.text import Text

    from ..plugins import plugin_status

    table = make_table("plugins")
    for col in ("name", "distribution", "version", "status"):
        table.add_column(col, no_wrap=True)
    table.add_column("components", justify="right", no_wrap=True)
    table.add_column("pretrained", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=20)
    for p in plugin_status():
        status = Text("ok", style="green") if p.ok else Text("failed", style="bold red")
        counts = (str(p.components), str(p.pretrained)) if p.ok else ("-", "-")
        add_row(table, p.name, p.distribution, p.version, status, *counts, Text(p.error, style="red"))
    print_table(table, empty="no plugins")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``zoo info``: what a component is, its declared contract and a table of its options."""
    from rich.text import Text

    from ..api import info

    from ..registry import REGISTRY

    console = make_console()
    REGISTRY.ensure_loaded()
    if args.kind is None and args.name in REGISTRY.pretrained:
        pretrained_info_lines(args.name, console)
        if not REGISTRY.find(args.name):
            return 0
    for entry in info(args.name, args.kind):
        console.print(Text.assemble((f"{entry.kind} ", "bold"), (entry.name, "bold cyan")))
        console.print(Text(f"  plugin: {entry.plugin} (distribution {entry.distribution})"))
        if entry.doc:
            console.print(Text(f"  {entry.doc}"))
        for key, value in entry.contract.items():
            shown = "(depends on its options)" if callable(value) else (
                value if isinstance(value, str) else ", ".join(value))
            console.print(Text(f"  {key}: {shown}"))
        table = make_table(f"options of {entry.kind} {entry.name!r}")
        for col in ("field", "type", "default"):
            table.add_column(col, no_wrap=col == "field", overflow="fold")
        table.add_column("description", overflow="fold")
        for name, type_, default, description in config_fields(entry.config):
            add_row(table, name, type_, default, description)
        print_table(table, empty="no options")
    return 0


def pretrained_info_lines(name: str, console: Any) -> None:
    """``zoo info NAME`` of a pretrained entry: source, revision, metrics, files, cached or not."""
    from rich.text import Text

    from ..hub.info import pretrained_info

    info = pretrained_info(name)
    console.print(Text.assemble(("pretrained ", "bold"), (name, "bold cyan")))
    if info["doc"]:
        console.print(Text(f"  {info['doc']}"))
    rows = [("method", f"{info['method']} (plugin {info['plugin']}, distribution {info['distribution']})"),
            ("source", info["source"]), ("weights", info["location"]), ("revision", info["revision"]),
            ("sha256", info["sha256"]), ("files", ", ".join(info["files"]) or None), ("licence", info["license"]),
            ("paper", info["paper"]), ("recipe", info["recipe"])]
    for key, value in rows:
        if value:
            console.print(Text(f"  {key}: {value}"), soft_wrap=True)
    if not info["available"]:
        console.print(Text(f"  not published: train with 'zoo train {info['recipe']}', then 'zoo push'"))
    else:
        console.print(Text(f"  cached: {info['cached'] or 'no (zoo download ' + name + ')'}"), soft_wrap=True)
    if info["metrics"]:
        table = make_table(f"metrics of {name!r}")
        for col in ("dataset", "protocol", "metric", "value", "measured by"):
            table.add_column(col, no_wrap=True)
        for m in info["metrics"]:
            add_row(table, m["dataset"], m["protocol"], m["metric"], f"{m['value']:g}", m["measured_by"])
        print_table(table, empty="")


def config_fields(config: Any) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) of each option of a config class, ``type`` excluded."""
    from pydantic_core import PydanticUndefined

    from ..config import component_kind, field_annotation

    rows = []
    for name, finfo in config.model_fields.items():
        if name == "type":
            continue
        kind = component_kind(field_annotation(config, name))
        type_ = f"{kind} config (type: ...)" if kind else _type_name(finfo.annotation)
        if finfo.default_factory is not None:
            try:
                default = short(finfo.default_factory())  # type: ignore[call-arg]
            except TypeError:
                default = "(computed)"
        elif finfo.default is PydanticUndefined:
            default = "required"
        else:
            default = short(finfo.default)
        rows.append((name, type_, default, finfo.description or ""))
    return rows


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")
