"""Are a trained set-embedding model's K embeddings diverse?  (PVSE analysis.)

For a finished run of a method whose heads return set embeddings with attention maps in
``aux["attention"]`` (``pvse_shapes``), this encodes the split with the trained model and with a
freshly initialised model of the same config (same vocabulary, the recipe's seed) and prints, for
images and for captions:

* the mean pairwise cosine between an item's K embeddings (1 = collapsed to one vector), and between
  its K normalised residuals sigmoid(fc(a_k)) (what the diversity regulariser acts on);
* the overlap of the K attention maps: the histogram intersection Σ_l min(a_k(l), a_k'(l)) of two
  heads' attention over the positions (feature-map cells, words), averaged over head pairs and
  items (1 = the heads attend identically, 0 = to disjoint positions);
* how often two heads' attention peaks on the same position.

    python benchmarks/pvse_diversity.py runs/pvse_shapes/<run> [--split test] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import xmodalzoo as zoo
from xmodalzoo.eval.encode import ImageItems
from xmodalzoo.hub.folder import build_from_folder


def fresh_model(run_dir: Path, seed: int, device: torch.device) -> Any:
    """The run's method as it was before training: same config and vocabulary, new seeded weights."""
    torch.manual_seed(seed)
    return build_from_folder(run_dir / "model", device)


def pair_stats(vectors: torch.Tensor, attention: torch.Tensor, residuals: torch.Tensor) -> dict[str, float]:
    """Mean pairwise cosine of the K embeddings and of the K residuals (both (N, K, D), unit norm),
    attention overlap and peak agreement."""
    n, k = vectors.shape[:2]
    if k < 2:
        raise SystemExit("the embeddings have K = 1: nothing to compare")
    i, j = torch.triu_indices(k, k, offset=1)
    cos = (vectors[:, i] * vectors[:, j]).sum(-1)  # (N, pairs)
    res_cos = (residuals[:, i] * residuals[:, j]).sum(-1)
    overlap = torch.minimum(attention[:, i], attention[:, j]).sum(-1)
    peaks = attention.argmax(-1)
    return {
        "mean_pairwise_cosine": float(cos.mean()),
        "residual_pairwise_cosine": float(res_cos.mean()),
        "attention_overlap": float(overlap.mean()),
        "same_peak_rate": float((peaks[:, i] == peaks[:, j]).float().mean()),
        "positions": int(attention.shape[-1]),
    }


@torch.no_grad()
def encode_with_attention(method: Any, dataset: Any, batch_size: int, device: torch.device) -> dict[str, Any]:
    images = DataLoader(ImageItems(dataset, method.image_transform(train=False)), batch_size=batch_size)
    img_vec, img_att, img_res = [], [], []
    for x in images:
        emb = method.encode_image(x.to(device))
        img_vec.append(emb.vectors.cpu())
        img_att.append(emb.aux["attention"].cpu())
        img_res.append(emb.aux["residuals"].cpu())
    txt = [pair_stats(e.vectors.cpu(), e.aux["attention"].cpu(), e.aux["residuals"].cpu()) | {"n": len(e.vectors)}
           for e in (method.encode_text(dataset.captions[s:s + batch_size])
                     for s in range(0, len(dataset.captions), batch_size))]
    # caption lengths differ per batch, so caption statistics are averaged per batch, weighted by size
    n_txt = sum(t["n"] for t in txt)
    keys = ("mean_pairwise_cosine", "residual_pairwise_cosine", "attention_overlap", "same_peak_rate")
    text = {key: sum(t[key] * t["n"] for t in txt) / n_txt for key in keys}
    return {"image": pair_stats(torch.cat(img_vec), torch.cat(img_att), torch.cat(img_res)), "text": text}


def analyse(run_dir: str, split: str, batch_size: int) -> dict[str, Any]:
    recipe, trained, dataset = zoo.load_run(run_dir, split)
    device = trained.device
    initial = fresh_model(Path(run_dir), recipe.seed, device)
    return {
        "run": str(run_dir),
        "split": split,
        "K": int(trained.encode_text(dataset.captions[:1]).vectors.shape[1]),
        "trained": encode_with_attention(trained, dataset, batch_size, device),
        "initial": encode_with_attention(initial, dataset, batch_size, device),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a finished run directory (with model/ and recipe.resolved.yaml)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    out = analyse(args.run_dir, args.split, args.batch_size)
    print(f"{out['run']} ({out['split']} split), K = {out['K']}")
    print(f"{'':8s} {'':9s} {'pairwise cos':>13s} {'residual cos':>13s} {'attn overlap':>13s} {'same peak':>10s}")
    for modality in ("image", "text"):
        for state in ("initial", "trained"):
            s = out[state][modality]
            print(f"{modality:8s} {state:9s} {s['mean_pairwise_cosine']:13.3f} {s['residual_pairwise_cosine']:13.3f} "
                  f"{s['attention_overlap']:13.3f} {s['same_peak_rate']:10.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
