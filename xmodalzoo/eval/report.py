"""Presenting results: a rich table (a row per protocol and direction) and an atomic JSON file."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from rich import box
from rich.table import Table

from ..files import write_text_atomic

META_KEY = "meta"
UNCERTAINTY_KEY = "uncertainty"
#: sections of a results dict that are not protocols (the reference rows, the uncertainty bins)
NOT_PROTOCOLS = (META_KEY, "reference", "uncertainty")
#: labels of the reference rows in the table
REFERENCE_LABELS = {"chance": "chance", "oracle": "oracle"}


#: table columns: (header, metric key suffix) — keys are ``{direction}_{suffix}`` or ``{suffix}_{direction}``
#: (or a name of :data:`DIRECTION_KEYS`)
COLUMNS = (("R@1", "r1"), ("R@5", "r5"), ("R@10", "r10"), ("mR", "mean_recall"), ("medr", "medr"),
           ("meanr", "meanr"), ("R-Prec", "r_precision"), ("mAP@R", "map_at_r"), ("PMRP", "pmrp"))
DIRECTIONS = (("i2t", "i→t"), ("t2i", "t→i"))
#: per-direction metrics whose keys follow no direction pattern: VSE∞'s mean recalls ``ar`` and ``ari``
DIRECTION_KEYS = {("i2t", "mean_recall"): "ar", ("t2i", "mean_recall"): "ari"}
#: meta keys only training knows (the best epoch on val); re-evaluating a run keeps them
TRAINING_META_KEYS = ("best_epoch", "best_val_rsum")


def _value(values: Mapping[str, Any], direction: str, suffix: str) -> Any:
    if (direction, suffix) in DIRECTION_KEYS:
        return values.get(DIRECTION_KEYS[direction, suffix])
    return values.get(f"{direction}_{suffix}", values.get(f"{suffix}_{direction}"))


def results_table(results: Mapping[str, Any], title: str | None = None) -> Table:
    """One row per protocol and direction (``i→t`` image→text, ``t→i`` text→image) with R@K, the mean
    of the three (``mR``: ``ar`` / ``ari``), ranks, R-Precision, mAP@R, PMRP, plus RSUM.

    Columns no protocol has are left out; values to one decimal (median ranks whole, mean ranks from
    1,000 up whole), ``-`` where undefined.  Compact (no vertical rules, short labels): every column
    fits in 80 terminal columns.  Where the results have a ``reference`` section (exact ground truth,
    :mod:`xmodalzoo.eval.reference`), each protocol is followed by its ``chance`` and ``oracle`` rows;
    the caption says how many images and captions were evaluated.
    """
    reference = results.get("reference") or {}
    rows = []
    for p, v in results.items():
        if p in NOT_PROTOCOLS or not isinstance(v, Mapping):
            continue
        rows.append((p, v))
        rows += [(f"  {label}", reference[name][p]) for name, label in REFERENCE_LABELS.items()
                 if isinstance(reference.get(name), Mapping) and p in reference[name]]
    present = [(h, s) for h, s in COLUMNS
               if any(_value(v, d, s) is not None for _, v in rows for d, _ in DIRECTIONS)]
    # one space between columns (no cell padding; the box's blank divider): every column fits in 80
    table = Table(title=title, caption=table_caption(results, bool(reference)), box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=0)
    table.add_column("protocol", style="bold", no_wrap=True)
    table.add_column("dir", no_wrap=True)
    for header, _ in present:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("RSUM", justify="right", style="bold", no_wrap=True)
    for protocol, values in rows:
        for i, (d, label) in enumerate(DIRECTIONS):
            rsum = _format(values.get("rsum")) if i == 0 else ""
            table.add_row(protocol if i == 0 else "", label,
                          *(_format(_value(values, d, s), s) for _, s in present), rsum)
    return table


def table_caption(results: Mapping[str, Any], with_reference: bool) -> str | None:
    """``1,000 images, 5,000 captions; chance: random scores, oracle: every true match first (expected)``."""
    meta = results.get(META_KEY) or {}
    parts = []
    if meta.get("num_images") is not None and meta.get("num_captions") is not None:
        parts.append(f"{meta['num_images']:,} images, {meta['num_captions']:,} captions")
    if with_reference:
        parts.append("chance: random scores; oracle: every true match first, ties at random (expected values)")
    return "; ".join(parts) or None


def _format(value: Any, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)):
        if key == "medr" or (key == "meanr" and abs(value) >= 1000):
            return f"{value:.0f}"
        return f"{value:.1f}"
    return str(value)


def keep_training_meta(results: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Carry the training-only meta (``best_epoch``, ``best_val_rsum``) and the ``uncertainty`` section
    of the results file at ``path`` (about to be replaced by an evaluation with the same settings)
    into ``results``, when it is for the same split and ``results`` lacks them; returns ``results``."""
    path = Path(path)
    try:
        previous = json.loads(path.read_text())
        old = previous.get(META_KEY) or {}
    except (OSError, ValueError, AttributeError):
        return results
    meta = results.setdefault(META_KEY, {})
    if old.get("split", meta.get("split")) != meta.get("split"):
        return results
    if isinstance(previous.get(UNCERTAINTY_KEY), dict) and UNCERTAINTY_KEY not in results:
        results[UNCERTAINTY_KEY] = previous[UNCERTAINTY_KEY]
    for key in TRAINING_META_KEYS:
        if key in old and key not in meta:
            meta[key] = old[key]
    return results


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
    return write_text_atomic(path, json.dumps(to_jsonable(results), indent=2, allow_nan=False) + "\n")


__all__ = ["TRAINING_META_KEYS", "keep_training_meta", "results_table", "to_jsonable", "write_results"]
