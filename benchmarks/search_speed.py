"""Top-10 search: the zoo's brute-force path (the engine's ``topk``) against faiss-cpu ``IndexFlatIP``.

Both run on the same unit vectors (D = 512 by default) at the same thread count (2), 5,000 queries
against galleries of 25,000 and 250,000 vectors.  The methods run interleaved, round after round,
and each reports its minimum over the rounds (3 by default); the peak working memory of a call is the
highest resident-set size sampled every 2 ms during it, minus the size before it (the query and
gallery tensors, and faiss's copy of the gallery, are allocated before).  Results are checked against
each other (same indices where the scores are not tied).  Also prints the recall@10 of faiss IVF and
HNSW against brute force on the smaller gallery.

    python benchmarks/search_speed.py                      # the table in docs/results.md
    python benchmarks/search_speed.py --sizes 25000 --rounds 1
    XMODALZOO_CPU_GEMM=numpy python benchmarks/search_speed.py   # the zoo's products through numpy's BLAS
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any, Callable

import torch


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """(seconds, peak extra resident bytes, result) of one call."""
    base = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    return seconds, max(0, max(peak, rss()) - base), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[25_000, 250_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budgets", type=int, nargs="+", default=[1 << 30],
                    help="max_bytes of the engine's blocks (default 1 GiB, the engine's default)")
    ap.add_argument("--recall-gallery", type=int, default=25_000,
                    help="gallery size of the IVF/HNSW recall measurement (0: skip it)")
    args = ap.parse_args()

    import faiss

    from xmodalzoo.embeddings import PointEmbedding
    from xmodalzoo.similarity.dot import Dot
    from xmodalzoo.similarity.engine import topk
    from xmodalzoo.similarity.gemm import cpu_backend

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(args.queries, args.dim, generator=gen), dim=-1)
    q_np = queries.numpy()
    print(f"top-{args.k}, {args.queries} queries, D = {args.dim}, {args.threads} threads "
          f"(torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}), min of {args.rounds} interleaved rounds; "
          f"zoo CPU GEMM backend {cpu_backend()} (XMODALZOO_CPU_GEMM)")
    print(f"{'gallery':>9}  {'method':<24} {'seconds':>8} {'queries/s':>10} {'peak MiB':>9}")
    for m in args.sizes:
        gallery = torch.nn.functional.normalize(torch.randn(m, args.dim, generator=gen), dim=-1)
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(gallery.numpy())
        methods: dict[str, Callable[[], Any]] = {}
        for budget in args.budgets:
            methods[f"zoo engine ({budget >> 20} MiB)"] = (
                lambda budget=budget: topk(Dot(), PointEmbedding(queries), PointEmbedding(gallery), args.k,
                                           max_bytes=budget, device="cpu"))
        methods["faiss IndexFlatIP"] = lambda: flat.search(q_np, args.k)
        best: dict[str, tuple[float, int]] = {}
        results: dict[str, torch.Tensor] = {}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                seconds, peak, out = measured(fn)
                prev = best.get(name, (float("inf"), 0))
                best[name] = (min(prev[0], seconds), max(prev[1], peak))
                results[name] = out[1] if isinstance(out[1], torch.Tensor) else torch.from_numpy(out[1]).long()
        for name, (seconds, peak) in best.items():
            print(f"{m:>9}  {name:<24} {seconds:>8.3f} {args.queries / seconds:>10.0f} {peak / 2**20:>9.0f}")
        ref = results["faiss IndexFlatIP"]
        for name, ids in results.items():
            agree = (ids == ref).float().mean().item()
            print(f"{'':>9}  {name:<24} indices equal to faiss flat: {agree:.5f}")
        del flat
    if args.recall_gallery:
        approximate_recall(args, queries)


def approximate_recall(args: argparse.Namespace, queries: torch.Tensor) -> None:
    """recall@k of faiss IVF and HNSW (default settings) against brute force, on clustered vectors
    (4,000 centres, noise 0.5 before normalising: uniform random vectors are the worst case)."""
    from xmodalzoo.embeddings import PointEmbedding
    from xmodalzoo.search import FaissOptions, Searcher
    from xmodalzoo.similarity.dot import Dot
    from xmodalzoo.similarity.engine import topk

    gen = torch.Generator().manual_seed(1)
    centers = torch.randn(4000, args.dim, generator=gen)

    def make(n: int) -> torch.Tensor:
        x = centers[torch.randint(len(centers), (n,), generator=gen)] + 0.5 * torch.randn(n, args.dim, generator=gen)
        return torch.nn.functional.normalize(x, dim=-1)

    m, n = args.recall_gallery, min(len(queries), 1000)
    gallery, q = PointEmbedding(make(m)), PointEmbedding(make(n))
    _, truth = topk(Dot(), q, gallery, args.k, device="cpu")
    for backend in ("faiss-ivf", "faiss-hnsw"):
        start = time.perf_counter()
        searcher = Searcher(Dot(), gallery, backend=backend, faiss_options=FaissOptions(threads=args.threads))
        built = time.perf_counter() - start
        seconds, _, (_, ids) = measured(lambda: searcher.topk(q, args.k))
        hit = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(truth, ids)) / truth.numel()
        print(f"{backend}: {n} queries x {m} clustered vectors, recall@{args.k} vs brute force {hit:.4f} "
              f"(build {built:.1f} s, search {seconds:.2f} s, {args.k + 16} candidates re-ranked)")


if __name__ == "__main__":
    main()
