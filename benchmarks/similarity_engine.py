"""Full ranking through the similarity engine vs. a per-query loop, at the COCO 5K shape (5,000 × 25,000, D = 1024).

For every case (cosine here; plugins add theirs in ``benchmarks/similarity_cases_*.py``, imported only
when needed, so ``--cases cosine`` runs without any plugin) this prints
the time of the "engine" mode — the full score matrix in memory-bounded blocks (``similarity_matrix``)
**followed by a full stable argsort of every row** (``argsort_desc``), on the chosen device — and of
the per-query loop the official repositories use (one query at a time: its scores against the whole
gallery, then an argsort).  Both produce complete rankings; the evaluator needs neither the matrix
nor the sort (it counts ranks and keeps a top-R per query while streaming the blocks), so its speed
is measured by ``benchmarks/evaluator_speed.py``, not here.  The loop is timed on a subset of queries
and extrapolated to all of them, their ratio, and the peak memory of each (GPU: max allocated;
CPU: peak resident set size of a fresh process per measurement).  Each measurement first runs both
modes once on a small slice (warm-up), so one-off set-up (CUDA context, cuBLAS, kernel selection) is
neither timed nor multiplied by the extrapolation.

    python benchmarks/similarity_engine.py                     # all cases, COCO 5K shape
    python benchmarks/similarity_engine.py --cases cosine --n 1000 --m 5000
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.similarity import Cosine, argsort_desc, similarity_matrix

HERE = Path(__file__).resolve().parent


def build_cosine(n: int, m: int, d: int, device: torch.device) -> tuple[Any, Any, Any]:
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    x = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=-1)
    return Cosine(), PointEmbedding(q.to(device)), PointEmbedding(x.to(device))


def loop_cosine(sim: Any, query: Any, gallery: Any, n_queries: int) -> None:
    """The official repositories' evaluation: for q in queries: scores = q @ gallery.T; argsort."""
    g = gallery.vectors
    for i in range(n_queries):
        scores = query.vectors[i : i + 1] @ g.t()
        torch.argsort(scores[0], descending=True)


Case = dict[str, Callable[..., Any]]
BUILTIN_CASES: dict[str, Case] = {"cosine": {"build": build_cosine, "loop": loop_cosine}}


class UnknownCase(Exception):
    """A case name that neither this file nor an importable ``similarity_cases_*.py`` defines."""


def case_files() -> list[Path]:
    return sorted(HERE.glob("similarity_cases_*.py"))


def import_case_file(path: Path) -> dict[str, Case]:
    """The ``CASES`` of one case file (it may import a plugin, which may be missing)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.CASES)


def load_cases(names: list[str] | None) -> tuple[dict[str, Case], dict[str, str]]:
    """The cases called ``names`` (all when None), importing case files only when needed.

    Returns the cases found and, per case file that could not be imported, its error; raises
    :class:`UnknownCase` (listing what is available) for a name nobody defines.
    """
    cases = dict(BUILTIN_CASES)
    broken: dict[str, str] = {}
    wanted = set(names) if names is not None else None
    for path in case_files():
        if wanted is not None and wanted <= set(cases):
            break  # everything asked for is known: leave the other files (and their plugins) alone
        try:
            cases.update(import_case_file(path))
        except Exception as exc:  # a missing plugin, typically
            broken[path.name] = f"{type(exc).__name__}: {exc}"
    if wanted is None:
        return cases, broken
    unknown = [n for n in names or [] if n not in cases]
    if unknown:
        message = (f"unknown case{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                   f"available: {', '.join(cases)}")
        if broken:
            message += "; not importable: " + "; ".join(f"{f} ({err})" for f, err in broken.items())
        raise UnknownCase(message)
    return {n: cases[n] for n in names or []}, broken


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_engine(sim: Any, q: Any, g: Any, max_bytes: int, device: torch.device) -> None:
    scores = similarity_matrix(sim, q, g, max_bytes=max_bytes, device=device, out_device=device)
    argsort_desc(scores, chunk_rows=max(1, max_bytes // (len(g) * 8)))


def warm_up(spec: Case, sim: Any, q: Any, g: Any, args: argparse.Namespace, device: torch.device) -> None:
    """Run both modes once on a small slice: CUDA context, cuBLAS handles, kernel selection and
    allocator set-up are then not timed (nor multiplied by the loop's extrapolation)."""
    qs, gs = q[: min(len(q), 64)], g[: min(len(g), 2048)]
    run_engine(sim, qs, gs, args.max_bytes, device)
    with torch.no_grad():
        spec["loop"](sim.eval(), qs, gs, min(len(qs), 2))
    sync(device)


def measure(case: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one measurement in this process and report seconds and peak bytes."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = load_cases([case])[0][case]
    sim, q, g = spec["build"](args.n, args.m, args.d, device)
    sim = sim.to(device)
    warm_up(spec, sim, q, g, args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sync(device)
    t0 = time.perf_counter()
    if mode == "engine":
        run_engine(sim, q, g, args.max_bytes, device)
        queries = args.n
    else:
        queries = min(args.n, args.loop_queries)
        with torch.no_grad():
            spec["loop"](sim.eval(), q, g, queries)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0)
    return {"seconds": seconds, "queries": queries, "peak_bytes": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="all", help="comma-separated case names, or all")
    ap.add_argument("--n", type=int, default=5000, help="queries (images)")
    ap.add_argument("--m", type=int, default=25000, help="gallery items (captions)")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-bytes", type=int, default=1 << 30, help="engine working-memory budget per block")
    ap.add_argument("--loop-queries", type=int, default=200, help="queries the loop baseline is timed on")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker[0], args.worker[1], args)))
        return
    try:
        cases, broken = load_cases(None if args.cases == "all" else [c for c in args.cases.split(",") if c])
    except UnknownCase as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    for file, err in broken.items():
        print(f"skipped {file}: {err}", file=sys.stderr)
    names = list(cases)
    print(f"shape: {args.n} queries × {args.m} gallery, D = {args.d}, device {args.device}, "
          f"engine budget {args.max_bytes / 2**20:.0f} MiB, torch threads {torch.get_num_threads()}")
    header = f"{'case':<14}{'matrix+sort s':>14}{'loop s (extrap.)':>18}{'ratio':>8}{'engine peak MiB':>17}{'loop peak MiB':>15}"
    print(header)
    for name in names:
        res = {}
        for mode in ("engine", "loop"):
            cmd = [sys.executable, __file__, "--worker", name, mode, "--n", str(args.n), "--m", str(args.m),
                   "--d", str(args.d), "--device", args.device, "--max-bytes", str(args.max_bytes),
                   "--loop-queries", str(args.loop_queries)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{name}/{mode} failed:\n{out.stderr}")
            res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        loop_full = res["loop"]["seconds"] * args.n / res["loop"]["queries"]
        print(f"{name:<14}{res['engine']['seconds']:>14.2f}{loop_full:>18.2f}"
              f"{loop_full / res['engine']['seconds']:>8.1f}{res['engine']['peak_bytes'] / 2**20:>17.0f}"
              f"{res['loop']['peak_bytes'] / 2**20:>15.0f}", flush=True)


if __name__ == "__main__":
    main()
