"""Presenting results: a rich table (one row per protocol) and an atomic JSON file."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from rich.table import Table

META_KEY = "meta"


def _metric_columns(results: Mapping[str, Any]) -> list[str]:
    columns: list[str] = []
    for protocol, values in results.items():
        if protocol == META_KEY or not isinstance(values, Mapping):
            continue
        columns += [k for k in values if k not in columns]
    return columns


def results_table(results: Mapping[str, Any], title: str | None = None) -> Table:
    """A table with one row per protocol and one column per metric, values to one decimal."""
    columns = _metric_columns(results)
    table = Table(title=title)
    table.add_column("protocol", style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    for protocol, values in results.items():
        if protocol == META_KEY or not isinstance(values, Mapping):
            continue
        table.add_row(protocol, *(_format(values.get(name)) for name in columns))
    return table


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.1f}"
    return str(value)


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: tensors/arrays to lists, numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(results: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``results`` as indented JSON to ``path`` atomically (a temp file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(to_jsonable(results), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["results_table", "to_jsonable", "write_results"]
