"""DivE's smooth-Chamfer at the COCO 5K shape: the evaluator vs the released per-query evaluation loop.

5,000 images × 25,000 captions (5 per image), K = 4 unit elements of D = 1,024 per item (random,
seeded). Two measurements, each in a fresh process:

* **evaluator**: ``xmodalzoo.eval.evaluate_embeddings(SmoothChamfer(α=16), images, captions, ...)``,
  the whole "full" protocol (R@K, ranks, RSUM in both directions) from one score matrix computed by the
  chunked engine in blocks of (n·K) × (m·K') cosines under ``--max-bytes``; the 20,000 × 100,000
  element-cosine matrix (8 GB in float32) is never held, only blocks of it;
* **loop**: the released DivE evaluation (``eval.py``: ``i2t`` then ``t2i``): for each image, its
  smooth-Chamfer scores against all 25,000 captions (one K × 100,000 product, pooled), a descending
  sort and the best rank of its 5 captions; for each image's 5 captions, their scores against all
  5,000 images and a sort per caption.  Timed on ``--loop-queries`` images per direction and
  extrapolated to all 5,000 (warm-up excluded).

It prints the time of each, their ratio, the peak memory of each (CPU: growth of the process's peak
resident set; GPU: ``torch.cuda.max_memory_allocated``), and checks that both give the same ranks on
the timed queries.

    python benchmarks/dive_smooth_chamfer.py                       # COCO 5K shape
    python benchmarks/dive_smooth_chamfer.py --images 1000 --loop-queries 20 --device cpu
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import SetEmbedding
from xmodalzoo.eval.config import EvalConfig
from xmodalzoo.eval.evaluate import evaluate_embeddings
from xmodalzoo_dive.similarity import SmoothChamfer
from similarity_cases_dive import pooled_scores  # noqa: E402  (benchmarks/ is the script's folder)

CAPTIONS_PER_IMAGE = 5


def embeddings(images: int, k: int, d: int, device: torch.device) -> tuple[SetEmbedding, SetEmbedding]:
    gen = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(images, k, d, generator=gen), dim=-1)
    cap = F.normalize(torch.randn(images * CAPTIONS_PER_IMAGE, k, d, generator=gen), dim=-1)
    return SetEmbedding(img.to(device)), SetEmbedding(cap.to(device))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_evaluator(sim: SmoothChamfer, img: SetEmbedding, cap: SetEmbedding, args: argparse.Namespace,
                  queries: int) -> dict[str, list[int]]:
    """The full protocol through the evaluator; 0-based ranks of the first ``queries`` queries per direction."""
    c2i = np.repeat(np.arange(len(img)), CAPTIONS_PER_IMAGE)
    cfg = EvalConfig(protocols=["full"], max_bytes=args.max_bytes, device=args.device)
    _, ranks = evaluate_embeddings(sim, img, cap, c2i, cfg, return_ranks=True)
    full = ranks["full"]
    return {"i2t": (full["i2t"][:queries] - 1).tolist(),
            "t2i": (full["t2i"][: queries * CAPTIONS_PER_IMAGE] - 1).tolist()}


def run_loop(sim: SmoothChamfer, img: SetEmbedding, cap: SetEmbedding, queries: int) -> dict[str, list[int]]:
    """The released per-query evaluation on the first ``queries`` images (i2t) and their captions (t2i),
    scoring unit elements as it does (one product + pooling, no re-normalisation)."""
    i2t, t2i = [], []
    for index in range(queries):  # i2t: one image against every caption
        scores = pooled_scores(sim, img.vectors[index : index + 1], cap.vectors)[0]
        order = torch.argsort(scores, descending=True)
        positions = (order[:, None] == torch.arange(CAPTIONS_PER_IMAGE * index, CAPTIONS_PER_IMAGE * (index + 1),
                                                    device=order.device)).nonzero()[:, 0]
        i2t.append(int(positions.min()))
    for index in range(queries):  # t2i: the image's 5 captions against every image
        scores = pooled_scores(sim, img.vectors, cap.vectors[CAPTIONS_PER_IMAGE * index: CAPTIONS_PER_IMAGE * (index + 1)]).t()
        for row in scores:
            order = torch.argsort(row, descending=True)
            t2i.append(int((order == index).nonzero()[0, 0]))
    return {"i2t": i2t, "t2i": t2i}


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    img, cap = embeddings(args.images, args.k, args.d, device)
    sim = SmoothChamfer(16.0).to(device).eval()
    with torch.no_grad():  # warm-up on a small slice: set-up costs are neither timed nor extrapolated
        run_loop(sim, img[:64], cap[: 64 * CAPTIONS_PER_IMAGE], 2)
        run_evaluator(sim, img[:64], cap[: 64 * CAPTIONS_PER_IMAGE], args, 1)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    with torch.no_grad():
        ranks = run_evaluator(sim, img, cap, args, args.loop_queries) if mode == "evaluator" \
            else run_loop(sim, img, cap, args.loop_queries)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0)
    return {"seconds": seconds, "peak_bytes": peak, "ranks": ranks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000, help="images (5 captions each)")
    ap.add_argument("--k", type=int, default=4, help="elements per item")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-bytes", type=int, default=1 << 30, help="engine working-memory budget per block")
    ap.add_argument("--loop-queries", type=int, default=50, help="images per direction the loop is timed on")
    ap.add_argument("--worker", choices=["evaluator", "loop"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return
    res = {}
    for mode in ("evaluator", "loop"):
        cmd = [sys.executable, __file__, "--worker", mode, "--images", str(args.images), "--k", str(args.k),
               "--d", str(args.d), "--device", args.device, "--max-bytes", str(args.max_bytes),
               "--loop-queries", str(args.loop_queries)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{mode} failed:\n{out.stderr}")
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    n, m = args.images, args.images * CAPTIONS_PER_IMAGE
    loop_full = res["loop"]["seconds"] * args.images / args.loop_queries
    same = res["loop"]["ranks"] == res["evaluator"]["ranks"]
    element_gb = n * args.k * m * args.k * 4 / 1e9
    print(f"smooth_chamfer (α = 16), K = {args.k}: {n} images × {m} captions, D = {args.d}, device {args.device}, "
          f"engine budget {args.max_bytes / 2**20:.0f} MiB, torch threads {torch.get_num_threads()}")
    print(f"(the full {n * args.k} × {m * args.k} element-cosine matrix would take {element_gb:.1f} GB in float32)")
    print(f"{'':28s}{'seconds':>10s}{'peak MiB':>10s}")
    print(f"{'evaluator (full protocol)':28s}{res['evaluator']['seconds']:>10.1f}{res['evaluator']['peak_bytes'] / 2**20:>10.0f}")
    print(f"{'per-query loop (extrap.)':28s}{loop_full:>10.1f}{res['loop']['peak_bytes'] / 2**20:>10.0f}"
          f"   ({res['loop']['seconds']:.1f} s for {args.loop_queries} images per direction)")
    print(f"loop / evaluator: {loop_full / res['evaluator']['seconds']:.1f}x; "
          f"ranks of the timed queries agree: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
