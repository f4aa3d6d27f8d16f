"""Does a trained DivE model keep an item's K elements diverse, and do its slots attend to distinct objects?

For a finished run of a ``dive_slots`` model on the shapes benchmark (``dive_shapes``), this encodes
the split with the trained model and with a freshly initialised model of the same config (same
vocabulary, the recipe's seed) and prints, for images and for captions:

* the mean pairwise cosine between an item's K elements (1 = collapsed to one vector) and between
  its K raw slots (what the set-uniformity term spreads);
* the overlap of the K slots' attention maps, Σ_l min(a_k(l), a_k'(l)) over positions (feature-map
  cells, words), averaged over slot pairs and items (1 = identical maps, 0 = disjoint);

and, for images, using the scenes' object positions (each object fills one cell of the 3 × 3 grid;
a feature-map cell counts towards an object by the share of its area inside the object's grid cell):

* the attention mass per object per slot: how much of each slot's attention falls on any object, and,
  over images with at least two objects, how often the K slots' most-attended objects differ
  (distinct top objects / min(K, objects), with the value for slots that pick objects at random);
* the overlap of two slots' attention over the objects (histogram intersection of their normalised
  object masses: 1 = the same objects, 0 = different ones);
* each slot's mean attention over the 3 × 3 grid (does a slot specialise in a place?).

    python benchmarks/dive_diversity.py runs/dive_shapes/<run> [--split test] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

import xmodalzoo as zoo
from xmodalzoo.eval.encode import ImageItems
from xmodalzoo.hub.folder import build_from_folder

GRID = 3  # the shapes scenes place objects in a 3 x 3 grid


def pair_means(x: torch.Tensor) -> torch.Tensor:
    """(N, pairs) cosines between the K rows of each item of (N, K, D)."""
    x = torch.nn.functional.normalize(x, dim=-1)
    i, j = torch.triu_indices(x.shape[1], x.shape[1], offset=1)
    return (x[:, i] * x[:, j]).sum(-1)


def attention_overlap(attention: torch.Tensor) -> torch.Tensor:
    """(N,) mean over slot pairs of Σ_l min(a_k(l), a_k'(l)) for attention (N, K, L) whose rows sum to 1."""
    i, j = torch.triu_indices(attention.shape[1], attention.shape[1], offset=1)
    return torch.minimum(attention[:, i], attention[:, j]).sum(-1).mean(1)


def set_stats(vectors: torch.Tensor, slots: torch.Tensor, attention: torch.Tensor) -> dict[str, float]:
    return {
        "element_cosine": float(pair_means(vectors).mean()),
        "slot_cosine": float(pair_means(slots).mean()),
        "attention_overlap": float(attention_overlap(attention).mean()),
    }


def cell_to_grid(side: int) -> torch.Tensor:
    """(side², 9): share of each of the side × side feature cells' area inside each 3 × 3 grid cell."""
    edges = np.linspace(0, 1, side + 1)
    grid = np.linspace(0, 1, GRID + 1)
    overlap_1d = np.clip(np.minimum(edges[1:, None], grid[None, 1:]) - np.maximum(edges[:-1, None], grid[None, :-1]),
                         0, None) * side  # (side, 3): share of a cell's width inside each grid column
    share = np.einsum("ar,bc->abrc", overlap_1d, overlap_1d).reshape(side * side, GRID * GRID)
    return torch.from_numpy(share).float()


def object_masses(attention: torch.Tensor, objects: np.ndarray) -> torch.Tensor:
    """(N, K, M) attention mass of each slot on each object (0 for absent objects)."""
    side = int(round(attention.shape[-1] ** 0.5))
    if side * side != attention.shape[-1]:
        raise SystemExit(f"the image attention covers {attention.shape[-1]} positions, not a square grid")
    per_grid = attention @ cell_to_grid(side)  # (N, K, 9)
    cell = torch.from_numpy(objects[..., 3].astype(np.int64) * GRID + objects[..., 4].astype(np.int64))  # row·3 + col
    present = torch.from_numpy(objects[..., 0] >= 0)
    mass = per_grid.gather(2, cell.clamp(min=0)[:, None, :].expand(-1, attention.shape[1], -1))
    return mass * present[:, None, :]


def object_stats(attention: torch.Tensor, objects: np.ndarray) -> dict[str, Any]:
    mass = object_masses(attention, objects)  # (N, K, M)
    n_obj = torch.from_numpy((objects[..., 0] >= 0).sum(1))
    k = attention.shape[1]
    multi = n_obj >= 2
    top = mass.argmax(-1)[multi]  # (N', K): each slot's most-attended object
    distinct = torch.tensor([len(set(row.tolist())) for row in top], dtype=torch.float32)
    cap = n_obj[multi].clamp(max=k).float()
    chance = n_obj[multi].float() * (1 - (1 - 1 / n_obj[multi].float()) ** k) / cap
    share = mass[multi] / mass[multi].sum(-1, keepdim=True).clamp(min=1e-12)
    i, j = torch.triu_indices(k, k, offset=1)
    per_slot_grid = (attention @ cell_to_grid(int(round(attention.shape[-1] ** 0.5)))).mean(0)  # (K, 9)
    return {
        "mass_on_objects": float(mass.sum(-1).mean()),
        "mass_on_objects_per_slot": [round(float(v), 3) for v in mass.sum(-1).mean(0)],
        "distinct_top_objects": float((distinct / cap).mean()),
        "distinct_top_objects_chance": float(chance.mean()),
        "object_overlap": float(torch.minimum(share[:, i], share[:, j]).sum(-1).mean()),
        "images_with_2plus_objects": int(multi.sum()),
        "slot_grid_attention": [[round(float(v), 3) for v in row] for row in per_slot_grid],
    }


@torch.no_grad()
def encode(method: Any, dataset: Any, batch_size: int) -> dict[str, Any]:
    device = method.device
    images = DataLoader(ImageItems(dataset, method.image_transform(train=False)), batch_size=batch_size)
    vec, slots, att = [], [], []
    for x in images:
        emb = method.encode_image(x.to(device))
        vec.append(emb.vectors.cpu())
        slots.append(emb.aux["slots"].cpu())
        att.append(emb.aux["attention"].cpu())
    image_att = torch.cat(att)
    out: dict[str, Any] = {"image": set_stats(torch.cat(vec), torch.cat(slots), image_att)}
    out["image"]["objects"] = object_stats(image_att, dataset.objects)
    # caption lengths differ per batch: caption statistics are averaged per batch, weighted by its size
    parts = []
    for s in range(0, len(dataset.captions), batch_size):
        emb = method.encode_text(dataset.captions[s:s + batch_size])
        parts.append((len(emb), set_stats(emb.vectors.cpu(), emb.aux["slots"].cpu(), emb.aux["attention"].cpu())))
    total = sum(n for n, _ in parts)
    out["text"] = {key: sum(n * st[key] for n, st in parts) / total for key in parts[0][1]}
    return out


def analyse(run_dir: str, split: str, batch_size: int) -> dict[str, Any]:
    recipe, trained, dataset = zoo.load_run(run_dir, split)
    if not hasattr(dataset, "objects"):
        raise SystemExit(f"{run_dir}: the object analysis needs the shapes benchmark (got {recipe.data.type})")
    torch.manual_seed(recipe.seed)
    initial = build_from_folder(Path(run_dir) / "model", trained.device)
    return {"run": str(run_dir), "split": split, "K": int(trained.embed_texts(dataset.captions[:1]).vectors.shape[1]),
            "trained": encode(trained, dataset, batch_size), "initial": encode(initial, dataset, batch_size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a finished run directory (with model/ and recipe.resolved.yaml)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    out = analyse(args.run_dir, args.split, args.batch_size)
    print(f"{out['run']} ({out['split']} split), K = {out['K']}")
    print(f"{'':16s} {'element cos':>12s} {'raw-slot cos':>13s} {'attn overlap':>13s}")
    for modality in ("image", "text"):
        for state in ("initial", "trained"):
            s = out[state][modality]
            print(f"{modality + ' ' + state:16s} {s['element_cosine']:12.3f} {s['slot_cosine']:13.3f} "
                  f"{s['attention_overlap']:13.3f}")
    print("\nimage slots vs objects (images with >= 2 objects for the last three columns)")
    print(f"{'':9s} {'mass on objects':>16s} {'distinct top objects':>21s} {'(random slots)':>15s} {'object overlap':>15s}")
    for state in ("initial", "trained"):
        o = out[state]["image"]["objects"]
        print(f"{state:9s} {o['mass_on_objects']:16.3f} {o['distinct_top_objects']:21.3f} "
              f"{o['distinct_top_objects_chance']:15.3f} {o['object_overlap']:15.3f}")
    print("\ntrained: mean attention of each slot over the 3 x 3 grid (rows top to bottom)")
    for k, row in enumerate(out["trained"]["image"]["objects"]["slot_grid_attention"]):
        cells = " | ".join(" ".join(f"{v:.2f}" for v in row[r * 3:(r + 1) * 3]) for r in range(3))
        print(f"  slot {k}: {cells}   (mass on objects {out['trained']['image']['objects']['mass_on_objects_per_slot'][k]:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
