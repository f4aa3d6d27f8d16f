"""A markdown table of finished runs' test results (for docs/results.md).

Reads ``eval_results.json`` of each run directory (written by ``zoo train`` at the end, or by
``zoo eval``) and prints one row per run: R@1/5/10 in both directions, RSUM, R-Precision and PMRP
(mean over ζ ∈ {0, 1, 2}) when the dataset provides them.

    python benchmarks/results_table.py runs/vse_shapes runs/pvse_shapes runs/pcme_shapes [--protocol full]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [
    ("i2t R@1", "i2t_r1"), ("i2t R@5", "i2t_r5"), ("i2t R@10", "i2t_r10"),
    ("t2i R@1", "t2i_r1"), ("t2i R@5", "t2i_r5"), ("t2i R@10", "t2i_r10"), ("RSUM", "rsum"),
    ("i2t R-P", "r_precision_i2t"), ("t2i R-P", "r_precision_t2i"),
    ("i2t PMRP", "pmrp_i2t"), ("t2i PMRP", "pmrp_t2i"),
]


def row(run_dir: Path, protocol: str) -> str:
    path = run_dir / "eval_results.json"
    if not path.is_file():
        raise SystemExit(f"{run_dir}: no eval_results.json (is the run finished?)")
    results = json.loads(path.read_text())
    if protocol not in results:
        raise SystemExit(f"{path}: no {protocol!r} protocol (has {[k for k in results if k != 'meta']})")
    values = results[protocol]
    cells = [f"{values[key]:.1f}" if key in values else "–" for _, key in COLUMNS]
    return f"| {run_dir.name} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--protocol", default="full")
    args = ap.parse_args()
    print("| run | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for run in args.runs:
        print(row(run, args.protocol))


if __name__ == "__main__":
    main()
