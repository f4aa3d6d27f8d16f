"""A markdown table of finished runs' test results (for docs/results.md).

Reads ``eval_results.json`` of each run directory (written by ``zoo train`` at the end, or by
``zoo eval``) and prints one row per run: R@1/5/10 in both directions, RSUM, the mean recall of each
direction (VSE∞'s ``ar`` = mean of i2t R@1/5/10 and ``ari`` for t2i; derived from the recalls for results
files written before they were stored), R-Precision and PMRP (mean over ζ ∈ {0, 1, 2}) when the dataset
provides them.

    python benchmarks/results_table.py runs/vse_shapes runs/pvse_shapes runs/pcme_shapes [--protocol full]

``--chance`` adds a row for random scores on the first run's test split: the mean over ``--seeds``
random unit-vector embeddings evaluated by the same evaluator (the level a method has to beat).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [
    ("i2t R@1", "i2t_r1"), ("i2t R@5", "i2t_r5"), ("i2t R@10", "i2t_r10"),
    ("t2i R@1", "t2i_r1"), ("t2i R@5", "t2i_r5"), ("t2i R@10", "t2i_r10"), ("RSUM", "rsum"),
    ("i2t mR", "ar"), ("t2i mR", "ari"),
    ("i2t R-P", "r_precision_i2t"), ("t2i R-P", "r_precision_t2i"),
    ("i2t PMRP", "pmrp_i2t"), ("t2i PMRP", "pmrp_t2i"),
]


MEAN_RECALL = {"ar": "i2t", "ari": "t2i"}


def with_mean_recalls(values: dict[str, float]) -> dict[str, float]:
    """``values`` with ``ar`` / ``ari`` (the mean of R@1, R@5, R@10 per direction) where they are missing."""
    out = dict(values)
    for key, direction in MEAN_RECALL.items():
        recalls = [values.get(f"{direction}_r{k}") for k in (1, 5, 10)]
        if key not in out and all(r is not None for r in recalls):
            out[key] = sum(recalls) / 3  # type: ignore[arg-type]
    return out


def row(run_dir: Path, protocol: str) -> str:
    path = run_dir / "eval_results.json"
    if not path.is_file():
        raise SystemExit(f"{run_dir}: no eval_results.json (is the run finished?)")
    results = json.loads(path.read_text())
    if protocol not in results:
        raise SystemExit(f"{path}: no {protocol!r} protocol (has {[k for k in results if k != 'meta']})")
    values = with_mean_recalls(results[protocol])
    cells = [f"{values[key]:.1f}" if key in values else "–" for _, key in COLUMNS]
    return f"| {run_dir.name} | " + " | ".join(cells) + " |"


def chance_row(run_dir: Path, protocol: str, seeds: int) -> str:
    """Mean results of random embeddings (seeded) on the run's test split, as a table row."""
    import torch

    import xmodalzoo as zoo
    from xmodalzoo.embeddings import PointEmbedding
    from xmodalzoo.eval.evaluate import evaluate_embeddings
    from xmodalzoo.api import build_component as build
    from xmodalzoo.similarity import Cosine

    recipe = zoo.load_recipe(run_dir / "recipe.resolved.yaml")
    test = build("dataset", recipe.data, split="test")
    sums: dict[str, float] = {}
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        img = PointEmbedding(torch.nn.functional.normalize(torch.randn(test.num_images, 64, generator=g), dim=-1))
        cap = PointEmbedding(torch.nn.functional.normalize(torch.randn(test.num_captions, 64, generator=g), dim=-1))
        values = evaluate_embeddings(Cosine(), img, cap, test, recipe.eval, protocols=[protocol])[protocol]
        for _, key in COLUMNS:
            if key in values:
                sums[key] = sums.get(key, 0.0) + values[key] / seeds
    cells = [f"{sums[key]:.1f}" if key in sums else "–" for _, key in COLUMNS]
    return f"| chance (random scores, mean of {seeds}) | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--protocol", default="full")
    ap.add_argument("--chance", action="store_true", help="add a row for random scores on the same test split")
    ap.add_argument("--seeds", type=int, default=5, help="random draws averaged for --chance")
    args = ap.parse_args()
    print("| run | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for run in args.runs:
        print(row(run, args.protocol))
    if args.chance:
        print(chance_row(args.runs[0], args.protocol, args.seeds))


if __name__ == "__main__":
    main()
