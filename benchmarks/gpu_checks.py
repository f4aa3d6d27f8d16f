"""GPU checks of the evaluator and the search engine, in one process (run on a machine with CUDA).

* **agreement**: for each similarity case (``benchmarks/similarity_engine.py`` and the plugins'
  ``similarity_cases_*.py``) at ``--n`` × ``--m`` (random unit vectors, D = ``--dim``, 5 captions per
  image, exhaustive positives), the streaming evaluator on CUDA against the score-matrix path on
  CUDA (``similarity_matrix`` then ``fold_metrics``) and against the streaming evaluator on the CPU:
  the largest metric difference and the share of equal ranks.  The streamed and materialised paths
  on one device score with different block shapes; where cuBLAS rounds a score differently by
  shape, near-ties may swap, so the share is printed rather than asserted.
* **search**: top-10 through the engine (:func:`xmodalzoo.similarity.topk`) on CUDA for
  ``--queries`` queries against galleries of ``--gallery`` vectors (D = 512), next to the bare float32
  product of the same shape (cuBLAS, into one buffer) and to ``torch.topk`` over the full score
  matrix; the indices are compared with the full-matrix ones.

    python benchmarks/gpu_checks.py
    python benchmarks/gpu_checks.py --cases cosine --n 500 --m 2500 --gallery 25000
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluator_speed as speed  # noqa: E402
import similarity_engine as bench  # noqa: E402


def timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """(min seconds over ``repeats`` calls between synchronisations, the last result), after a warm-up."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def compare(a: dict[str, float], ra: dict[str, torch.Tensor], b: dict[str, float],
            rb: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(largest difference of a metric both report, NaN left out; share of equal ranks) of two evaluations."""
    diff = max(abs(a[k] - b[k]) for k in a if k in b and a[k] == a[k])
    same = sum(int((ra[d].cpu() == rb[d].cpu()).sum()) for d in ra) / sum(ra[d].numel() for d in ra)
    return diff, same


def agreement(cases: list[str], n: int, m: int, dim: int) -> None:
    from xmodalzoo.eval import RetrievalTargets, fold_metrics
    from xmodalzoo.eval.streaming import stream_fold_metrics
    from xmodalzoo.similarity import similarity_matrix

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    print(f"agreement at {n} x {m}, D = {dim}: streamed on CUDA vs materialised on CUDA, and vs streamed on CPU")
    print(f"{'case':<18}{'max |Δ| mat':>12}{'ranks = mat':>12}{'max |Δ| cpu':>12}{'ranks = cpu':>12}{'stream ms':>10}{'matrix ms':>10}")
    for case in cases:
        spec = bench.load_cases([case])[0][case]
        sim, img, cap = spec["build"](n, m, dim, cuda)
        sim.eval()
        c2i, pos = speed.fold_targets(n, m)
        with torch.no_grad():
            t_stream, (got, ranks) = timed(lambda: stream_fold_metrics(
                sim, img, cap, c2i.to(cuda), positives=pos.to(cuda), device=cuda))
            targets = RetrievalTargets(c2i.numpy(), n, pos.to(cuda))
            t_matrix, (want, want_ranks) = timed(lambda: fold_metrics(
                similarity_matrix(sim, img, cap, device=cuda, out_device=cuda), targets))
            on_cpu, cpu_ranks = stream_fold_metrics(copy.deepcopy(sim).to(cpu), img.to(cpu), cap.to(cpu), c2i,
                                                    positives=pos, device=cpu)

        d_mat, s_mat = compare(got, ranks, want, want_ranks)
        d_cpu, s_cpu = compare(got, ranks, on_cpu, cpu_ranks)
        print(f"{case:<18}{d_mat:>12.2e}{s_mat:>12.6f}{d_cpu:>12.2e}{s_cpu:>12.6f}"
              f"{t_stream * 1e3:>10.2f}{t_matrix * 1e3:>10.2f}", flush=True)


def search(queries: int, galleries: list[int], dim: int, k: int) -> None:
    from xmodalzoo.embeddings import PointEmbedding
    from xmodalzoo.similarity import Cosine, topk

    cuda = torch.device("cuda")
    print(f"search: top-{k} of {queries} queries, D = {dim}, on CUDA (float32, TF32 off)")
    print(f"{'gallery':>9}{'gemm ms':>9}{'topk ms':>9}{'ratio':>7}{'full+topk ms':>13}{'same idx':>10}{'peak MiB':>9}")
    for size in galleries:
        gen = torch.Generator(device=cuda).manual_seed(0)
        q = torch.nn.functional.normalize(torch.randn(queries, dim, device=cuda, generator=gen), dim=-1)
        x = torch.nn.functional.normalize(torch.randn(size, dim, device=cuda, generator=gen), dim=-1)
        out = torch.empty(queries, size, device=cuda)
        t_gemm, _ = timed(lambda: torch.matmul(q, x.t(), out=out))
        del out
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t_topk, (_, idx) = timed(lambda: topk(Cosine(), PointEmbedding(q), PointEmbedding(x), k, device=cuda))
        peak = torch.cuda.max_memory_allocated() - base
        t_full, (_, ref) = timed(lambda: (q @ x.t()).topk(k, dim=1))
        same = float((idx == ref).float().mean())
        print(f"{size:>9}{t_gemm * 1e3:>9.2f}{t_topk * 1e3:>9.2f}{t_topk / t_gemm:>7.2f}{t_full * 1e3:>13.2f}"
              f"{same:>10.5f}{peak / 2**20:>9.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=["cosine", "csd", "mil_max_k4", "smooth_chamfer_k4", "match_prob"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--m", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--gallery", type=int, nargs="+", default=[25_000, 250_000, 1_000_000])
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    agreement(args.cases, args.n, args.m, args.dim)
    search(args.queries, args.gallery, 512, args.k)


if __name__ == "__main__":
    main()
