"""How the ``zoo`` command prints: errors and warnings on stderr, tables and plain lines on stdout."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import UserError


def print_error(exc: BaseException | str) -> None:
    """Print a user error on stderr in red, one line per problem, without a traceback."""
    from rich.text import Text

    if isinstance(exc, UserError):
        lines = exc.lines()
    elif isinstance(exc, OSError) and exc.filename is not None:
        lines = [f"{exc.filename}: {exc.strerror or exc}"]
    else:
        lines = str(exc).splitlines() or [type(exc).__name__]
    console = make_console(stderr=True)
    console.print(Text("error: ", style="bold red") + Text(lines[0], style="red"))
    for line in lines[1:]:
        console.print(Text(f"       {line}", style="red"))


def show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """``warnings.showwarning`` for the command line: one yellow ``warning:`` line on stderr."""
    from rich.text import Text

    make_console(stderr=True).print(Text(f"warning: {message}", style="yellow"))


def make_console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr) that keeps messages on one line."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a file has no width to respect: use a wide one rather than rich's default of 80
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 120
    return Console(file=stream, highlight=False, width=width, soft_wrap=True)


def say(text: str, stderr: bool = False) -> None:
    """Print ``text`` verbatim on stdout (or stderr)."""
    print(text, file=sys.stderr if stderr else sys.stdout)


def make_table(title: str) -> Any:
    from rich.table import Table

    return Table(title=title, title_justify="left", show_lines=False)


def add_row(table: Any, *cells: Any) -> None:
    """Add a row whose plain-string cells are shown verbatim (not parsed as rich markup)."""
    from rich.text import Text

    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def print_table(table: Any, empty: str) -> None:
    """The table, or ``TITLE: EMPTY`` when it has no rows."""
    console = make_console()
    if table.row_count == 0:
        console.print(f"{table.title}: {empty}", markup=False)
        return
    console.print(table)


def short(value: Any, limit: int = 60) -> str:
    """A value as JSON (mappings, lists) or ``repr``, cut to ``limit`` characters."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = json.dumps(value) if isinstance(value, (dict, list, tuple)) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def add_set_option(parser: Any, help: str) -> None:
    """The repeatable ``--set KEY=VALUE`` option (overrides, in :attr:`args.overrides`)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)
