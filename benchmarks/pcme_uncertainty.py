"""Does a trained probabilistic model's uncertainty follow ambiguity?  (PCME analysis on shapes.)

For a finished run of a method with ``uncertainty`` (``pcme_shapes``, ``pcmepp_*``) on a dataset with
exhaustive positives (the built-in shapes benchmark), this prints:

* Spearman's ρ between each caption's uncertainty (mean σ² over dimensions) and the number of
  images of the split it truly matches (its ambiguity), and the same for images against the number
  of captions of the split that truly describe them;
* ρ between caption uncertainty and how much a caption says (objects, attributes it mentions), and
  the mean caption uncertainty by the number of objects it mentions;
* R@1 per uncertainty bin (10 equal-count bins, low → high) for both query directions, and ρ
  between bin and R@1.

    python benchmarks/pcme_uncertainty.py runs/pcme_shapes/<run> [--split test] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

import xmodalzoo as zoo
from xmodalzoo.eval import encode_dataset, evaluate
from xmodalzoo.eval.uncertainty import bin_indices, spearman, uncertainty_bins


def analyse(run_dir: str, split: str) -> dict[str, Any]:
    recipe, method, dataset = zoo.load_run(run_dir, split)
    if dataset.positives is None:
        raise SystemExit(f"{run_dir}: the {split} split has no exhaustive positives (use the shapes benchmark)")
    img, cap = encode_dataset(method, dataset, recipe.eval)
    u_img, u_cap = method.uncertainty(img).cpu(), method.uncertainty(cap).cpu()
    pos = dataset.positives.bool()  # (captions, images)
    matches_per_caption, captions_per_image = pos.sum(1), pos.sum(0)

    mentioned = torch.as_tensor(getattr(dataset, "caption_num_objects", torch.zeros(len(u_cap))))
    attributes = torch.as_tensor(getattr(dataset, "caption_num_attributes", torch.zeros(len(u_cap))))
    by_mentions = {int(k): {"captions": int((mentioned == k).sum()),
                            "mean_uncertainty": float(u_cap[mentioned == k].mean()),
                            "mean_matching_images": float(matches_per_caption[mentioned == k].float().mean())}
                   for k in mentioned.unique()}

    results, ranks = evaluate(method, dataset, recipe.eval, protocols=["full"], return_ranks=True,
                              embeddings=(img, cap), progress=False)
    r = ranks["full"]
    bins_i2t = uncertainty_bins(u_img[r["image_index"]], r["i2t"] - 1)
    bins_t2i = uncertainty_bins(u_cap[r["caption_index"]], r["t2i"] - 1)
    return {
        "run": str(run_dir),
        "split": split,
        "spearman_caption_uncertainty_vs_matching_images": spearman(u_cap, matches_per_caption),
        "spearman_image_uncertainty_vs_matching_captions": spearman(u_img, captions_per_image),
        "spearman_caption_uncertainty_vs_objects_mentioned": spearman(u_cap, mentioned),
        "spearman_caption_uncertainty_vs_attributes_mentioned": spearman(u_cap, attributes),
        "caption_uncertainty_by_objects_mentioned": by_mentions,
        "r1_bins_i2t": [round(b["r1"], 2) for b in bins_i2t],
        "r1_bins_t2i": [round(b["r1"], 2) for b in bins_t2i],
        "r10_bins_i2t": [round(b["r10"], 2) for b in bins_i2t],
        "r10_bins_t2i": [round(b["r10"], 2) for b in bins_t2i],
        "matching_images_per_t2i_bin": [round(float(matches_per_caption[r["caption_index"]][idx].float().mean()), 1)
                                        for idx in bin_indices(u_cap[r["caption_index"]])],
        "spearman_bin_vs_r1_i2t": spearman(torch.arange(len(bins_i2t)), [b["r1"] for b in bins_i2t]),
        "spearman_bin_vs_r1_t2i": spearman(torch.arange(len(bins_t2i)), [b["r1"] for b in bins_t2i]),
        "spearman_bin_vs_r10_i2t": spearman(torch.arange(len(bins_i2t)), [b["r10"] for b in bins_i2t]),
        "spearman_bin_vs_r10_t2i": spearman(torch.arange(len(bins_t2i)), [b["r10"] for b in bins_t2i]),
        "rsum": results["full"]["rsum"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a finished run directory (with model/ and recipe.resolved.yaml)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    out = analyse(args.run_dir, args.split)
    for key, value in out.items():
        if key == "caption_uncertainty_by_objects_mentioned":
            print(f"{key}:")
            for k, row in value.items():
                print(f"  {k} object(s): {row['captions']:5d} captions, mean σ² {row['mean_uncertainty']:.5f}, "
                      f"matches {row['mean_matching_images']:.1f} images on average")
        else:
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
