"""The engine's CPU product through each backend, side by side: ms per GFLOP of ``a @ b.T`` in blocks.

For each backend of :mod:`xmodalzoo.similarity.gemm` (``torch`` = MKL in PyPI wheels, ``onednn``,
``numpy`` = OpenBLAS) and each block shape, the whole 5,000 × D @ D × 25,000 product is computed
block by block, the way the engine does it (one reused, 16-float-aligned output buffer for the
backends that write into one; fresh products for oneDNN), rounds interleaved, minimum of
``--rounds``.  Shapes: the search plan's blocks (1,250 × 6,250 at the default budget), a block over
32 MiB (2,500 × 6,250: fresh products then fault in new pages), tall narrow blocks and the
evaluator's (D = 1,024: 2,500 × 2,500 at 5K × 25K).  This is the measurement behind the ``auto``
choice; the header names the CPU.

    python benchmarks/cpu_gemm.py
    python benchmarks/cpu_gemm.py --dim 1024 --shapes 2500x2500 1000x5000
"""
from __future__ import annotations

import argparse
import os
import time

import torch

SHAPES = ["1250x6250", "2500x6250", "5000x1250", "2500x3125"]


def run(gemm, backend: str, q: torch.Tensor, g: torch.Tensor, rows: int, cols: int) -> None:
    os.environ[gemm.ENV] = backend
    gemm.cpu_backend.cache_clear()
    width = -(-cols // 16) * 16
    buf = torch.empty(rows * width) if gemm.writes_into_out(q[:1], g[:1]) else None
    for r in range(0, len(q), rows):
        for c in range(0, len(g), cols):
            a, b = q[r : r + rows], g[c : c + cols]
            out = None if buf is None else buf[: len(a) * width].view(len(a), width)[:, : len(b)]
            gemm.matmul_t(a, b, out=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--gallery", type=int, default=25_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--shapes", nargs="+", default=SHAPES, help="block shapes ROWSxCOLS")
    ap.add_argument("--backends", nargs="+", default=["torch", "onednn", "numpy"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from xmodalzoo.similarity import gemm

    backends = [b for b in args.backends if b != "onednn" or gemm._onednn_usable()]
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(args.queries, args.dim, generator=gen)
    g = torch.randn(args.gallery, args.dim, generator=gen)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes]
    cases = [(b, s) for s in shapes for b in backends]
    best = {c: float("inf") for c in cases}
    for b, (rows, cols) in cases:  # warm-up
        run(gemm, b, q, g, rows, cols)
    for _ in range(args.rounds):
        for c in cases:
            start = time.perf_counter()
            run(gemm, c[0], q, g, *c[1])
            best[c] = min(best[c], time.perf_counter() - start)
    gflop = 2 * args.queries * args.gallery * args.dim / 1e9
    os.environ.pop(gemm.ENV, None)
    gemm.cpu_backend.cache_clear()
    print(f"{gemm.cpuinfo('model name') or 'unknown CPU'}; threads {args.threads}; {args.queries} x {args.dim} @ {args.dim} x {args.gallery} "
          f"({gflop:.0f} GFLOP) in blocks; min of {args.rounds}; auto picks {gemm.cpu_backend()}")
    print(f"{'block':>12} " + " ".join(f"{b + ' ms/GFLOP':>18}" for b in backends) + "  vs torch")
    for rows, cols in shapes:
        times = [best[(b, (rows, cols))] / gflop * 1e3 for b in backends]
        ratios = " ".join(f"{t / times[0]:.2f}" for t in times[1:]) if backends[0] == "torch" else ""
        print(f"{f'{rows}x{cols}':>12} " + " ".join(f"{t:>18.2f}" for t in times) + f"  {ratios}")


if __name__ == "__main__":
    main()
