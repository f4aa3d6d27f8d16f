"""Evaluator speed: every metric of a fold vs. the bare GEMM its similarity needs vs. the official loop.

For each similarity case (the cases of ``benchmarks/similarity_engine.py``: cosine, and the plugins'
``similarity_cases_*.py``) and each size N images × M captions (5 captions per image, D = 1024,
random unit vectors; the caption's own image is its positive, plus the exhaustive positives mask, so
R-Precision and mAP@R are computed too) this prints, in one run:

* ``gemm s``: the bare dense matmul of the similarity's GEMM form (through the engine's CPU product,
  whose BLAS the header names: ``XMODALZOO_CPU_GEMM``, see :mod:`xmodalzoo.similarity.gemm`) (cosine N×D @ D×M; ``mil_max`` and
  ``smooth_chamfer`` (N·K)×D @ D×(M·K); ``csd`` the (D+2)-wide augmented GEMM; ``match_prob`` the
  (N·J)×(M·J) distance GEMM), in row blocks into one reused output buffer (or, for a backend that
  returns fresh products, blocks under 24 MiB);
* ``eval s``: :func:`~xmodalzoo.eval.streaming.stream_fold_metrics`, every metric of the fold (R@1/5/10,
  medr, meanr both ways, R-Precision and mAP@R both ways), and ``ratio`` = eval / gemm;
* ``loop s``: the official-style evaluation (per query: its scores against the whole gallery, then an
  argsort; i2t over the N images and t2i over the M captions), timed on ``--loop-queries`` queries per
  direction and extrapolated, and ``loop/eval``;
* ``peak MiB``: peak resident memory of a fresh process that builds the embeddings and runs the
  evaluator once, next to the inputs' size and what the full N × M float32 score matrix would take.

Times are the minimum of ``--repeats`` interleaved rounds (gemm, eval, loop, gemm, ...) on
``--threads`` threads.

With ``--device cuda`` everything runs on the GPU (timed between synchronisations): ``gemm s`` is
then cuBLAS's float32 product (TF32 off, as the evaluator runs), next to it ``bf16 s`` (the same
product in bfloat16, the chip's fastest) and the achieved TFLOP/s of each; ``peak MiB`` is the
evaluator's peak allocated GPU memory.  ``--gpu-variants`` also times the evaluator with other
block shapes (hot-block bytes, block columns, pair-stage rows), and each row says whether the
evaluator had to recount (the first scoring of the positive pairs rounded differently from the
blocks: a second pass).

    python benchmarks/evaluator_speed.py                                  # the full table
    python benchmarks/evaluator_speed.py --cases cosine --sizes 1000x5000 --repeats 1   # quick check
    python benchmarks/evaluator_speed.py --device cuda --sizes 5000x25000 --gpu-variants # on a GPU
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
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_PLAN = {  # case -> sizes of the full table
    "cosine": ["1000x5000", "5000x25000", "10000x50000"],
    "csd": ["1000x5000", "5000x25000"],
    "mil_max_k4": ["1000x5000"],
    "smooth_chamfer_k4": ["1000x5000"],
    "match_prob": ["1000x5000"],
}
GPU_PLAN = {  # the same on a GPU: every case at the COCO 5K shape too, cosine up to 25K × 125K
    "cosine": ["1000x5000", "5000x25000", "10000x50000", "25000x125000"],
    "csd": ["1000x5000", "5000x25000"],
    "mil_max_k4": ["1000x5000", "5000x25000"],
    "smooth_chamfer_k4": ["1000x5000", "5000x25000"],
    "match_prob": ["1000x5000", "5000x25000"],
}


def engine_bench() -> Any:
    """benchmarks/similarity_engine.py as a module (its cases and their official loops)."""
    spec = importlib.util.spec_from_file_location("similarity_engine", HERE / "similarity_engine.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fold_targets(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """caption → image (captions grouped by image, m // n per image) and the (M, N) positives mask."""
    c2i = torch.arange(m) * n // m
    return c2i, torch.arange(n)[None, :] == c2i[:, None]


def bare_gemm(scorer: Any, out_bytes: int = 256 << 20, fresh_bytes: int = 24 << 20) -> float:
    """Seconds of ``A @ B.T`` for the scorer's GEMM operands, in row blocks (through the engine's CPU
    product, :func:`xmodalzoo.similarity.gemm.matmul_t`, so both sides of the ratio use the same
    BLAS): into one output buffer of up to ``out_bytes``, or, for a backend that returns fresh
    products (oneDNN), in blocks of at most ``fresh_bytes`` (larger fresh products fault in new
    pages and multiply slower: the baseline would flatter the ratio)."""
    from xmodalzoo.similarity.gemm import matmul_t, writes_into_out

    a, b = scorer.a, scorer.b
    into = writes_into_out(a[:1], b[:1])
    limit = out_bytes if into else fresh_bytes
    rows = max(1, min(a.shape[0], limit // (b.shape[0] * 4)))
    cols = b.shape[0] if rows > 1 or into else max(1, limit // 4)
    buf = torch.empty(rows, b.shape[0], dtype=a.dtype) if into else None
    start = time.perf_counter()
    for r in range(0, a.shape[0], rows):
        part = a[r : r + rows]
        for c in range(0, b.shape[0], cols):
            matmul_t(part, b[c : c + cols], out=None if buf is None else buf[: len(part), c : c + cols])
    return time.perf_counter() - start


def bare_gemm_gpu(scorer: Any, dtype: torch.dtype, out_bytes: int = 1 << 30) -> float:
    """Seconds of ``A @ B.T`` on the GPU in ``dtype`` (cuBLAS), in row blocks into one output buffer
    of up to ``out_bytes``, between two synchronisations."""
    a, b = scorer.a.to(dtype), scorer.b.to(dtype)
    rows = max(1, min(a.shape[0], out_bytes // (b.shape[0] * a.element_size())))
    buf = torch.empty(rows, b.shape[0], dtype=dtype, device=a.device)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for r in range(0, a.shape[0], rows):
        part = a[r : r + rows]
        torch.matmul(part, b.t(), out=buf[: len(part)])
    torch.cuda.synchronize()
    return time.perf_counter() - start


#: --gpu-variants: (label, module attributes of xmodalzoo.eval.streaming to set)
GPU_VARIANTS = [
    ("hot 256M cols 16K", {"GPU_HOT_BLOCK_BYTES": 256 << 20}),
    ("hot 4G cols 64K", {"GPU_HOT_BLOCK_BYTES": 4 << 30, "GPU_BLOCK_COLS": 65536}),
    ("pairs 1024", {"GPU_PAIR_ROWS": 1024}),
    ("no window (second pass)", {"_use_window": lambda device: False}),
]


def measure(case: str, n: int, m: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (case, size): min-of-repeats gemm, evaluator and loop seconds (in this process)."""
    from xmodalzoo.eval import streaming
    from xmodalzoo.eval.streaming import stream_fold_metrics
    from xmodalzoo.similarity.scorer import prepare_scorer

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    bench = engine_bench()
    spec = bench.load_cases([case])[0][case]
    sim, img, cap = spec["build"](n, m, args.dim, device)
    sim.eval()
    c2i, positives = fold_targets(n, m)
    c2i, positives = c2i.to(device), positives.to(device)
    recounts: list[bool] = []
    same_scores = streaming._same_scores

    def recording(a: torch.Tensor, b: torch.Tensor) -> bool:
        same = same_scores(a, b)
        recounts.append(not same)
        return same

    streaming._same_scores = recording

    def evaluate() -> float:
        sync()
        start = time.perf_counter()
        stream_fold_metrics(sim, img, cap, c2i, positives=positives, device=device, max_bytes=args.max_bytes)
        sync()
        return time.perf_counter() - start

    with torch.no_grad():
        scorer = prepare_scorer(sim, img, cap, device, 0)
        stream_fold_metrics(sim, img[:64], cap[: 64 * m // n], c2i[: 64 * m // n], device=device)  # warm-up
        spec["loop"](sim, img, cap, 2)
        best: dict[str, Any] = {"gemm": float("inf"), "eval": float("inf"), "loop_i2t": float("inf"),
                                "loop_t2i": float("inf"), "bf16": float("inf")}
        q = min(args.loop_queries, n)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            evaluate()  # also the warm-up of the full-size kernels
            best["gpu_peak_bytes"] = torch.cuda.max_memory_allocated() - base
            if scorer.uses_gemm:
                bare_gemm_gpu(scorer, torch.float32), bare_gemm_gpu(scorer, torch.bfloat16)
        for _ in range(args.repeats):
            if scorer.uses_gemm:
                best["gemm"] = min(best["gemm"], bare_gemm_gpu(scorer, torch.float32) if gpu else bare_gemm(scorer))
                if gpu:
                    best["bf16"] = min(best["bf16"], bare_gemm_gpu(scorer, torch.bfloat16))
            recounts.clear()
            best["eval"] = min(best["eval"], evaluate())
            best["recount"] = any(recounts)
            sync()
            start = time.perf_counter()
            spec["loop"](sim, img, cap, q)  # i2t: each image against every caption
            sync()
            best["loop_i2t"] = min(best["loop_i2t"], (time.perf_counter() - start) * n / q)
            start = time.perf_counter()
            spec["loop"](sim, cap, img, q)  # t2i: each caption against every image
            sync()
            best["loop_t2i"] = min(best["loop_t2i"], (time.perf_counter() - start) * m / q)
        if scorer.uses_gemm:
            best["flops"] = 2.0 * scorer.a.shape[0] * scorer.b.shape[0] * scorer.a.shape[1]
        if gpu and args.gpu_variants:
            defaults = {name: getattr(streaming, name) for _, change in GPU_VARIANTS for name in change}
            variants = {}
            for label, change in GPU_VARIANTS:
                for name, value in change.items():
                    setattr(streaming, name, value)
                recounts.clear()
                seconds = min(evaluate() for _ in range(args.repeats))
                variants[label] = [seconds, any(recounts)]
                for name, value in defaults.items():
                    setattr(streaming, name, value)
            best["variants"] = variants
    return best


def peak_memory(case: str, n: int, m: int, args: argparse.Namespace) -> dict[str, float]:
    """Peak RSS of this process after building the embeddings and running the evaluator once."""
    from xmodalzoo.eval.streaming import stream_fold_metrics

    bench = engine_bench()
    sim, img, cap = bench.load_cases([case])[0][case]["build"](n, m, args.dim, torch.device("cpu"))
    c2i, positives = fold_targets(n, m)
    inputs = sum(t.numel() * t.element_size() for e in (img, cap) for t in e.tensors().values())
    inputs += positives.numel()
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stream_fold_metrics(sim.eval(), img, cap, c2i, positives=positives, device="cpu", max_bytes=args.max_bytes)
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "built_bytes": built,
            "input_bytes": inputs}


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    n, m = parse_size(args.worker_size)
    fn = measure if args.worker == "time" else peak_memory
    print(json.dumps(fn(args.worker_case, n, m, args)))


def parse_size(text: str) -> tuple[int, int]:
    try:
        n, m = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"error: size {text!r} is not NxM (e.g. 1000x5000)") from None
    return n, m


def run_worker(mode: str, case: str, size: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", mode, "--worker-case", case, "--worker-size", size,
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--dim", str(args.dim),
           "--loop-queries", str(args.loop_queries), "--max-bytes", str(args.max_bytes), "--device", args.device]
    if args.gpu_variants:
        cmd.append("--gpu-variants")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", help=f"cases to run (default: {', '.join(DEFAULT_PLAN)})")
    ap.add_argument("--sizes", nargs="*", help="NxM sizes for every case (default: each case's sizes of the table)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the minimum is reported")
    ap.add_argument("--loop-queries", type=int, default=50, help="queries per direction the loop is timed on")
    ap.add_argument("--max-bytes", type=int, default=1 << 30, help="the evaluator's working-memory budget")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--gpu-variants", action="store_true", help="on cuda: also time other block shapes")
    ap.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-case", help=argparse.SUPPRESS)
    ap.add_argument("--worker-size", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    cases = args.cases or list(DEFAULT_PLAN)
    bench = engine_bench()
    try:
        bench.load_cases(cases)  # an unknown case: one line here, not a worker's traceback
    except bench.UnknownCase as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.device != "cpu":
        gpu_main(cases, args)
        return
    from xmodalzoo.similarity.gemm import cpu_backend

    print(f"CPU GEMM backend {cpu_backend()}; "
          f"threads {args.threads}, D = {args.dim}, min of {args.repeats} interleaved rounds, "
          f"loop timed on {args.loop_queries} queries per direction; load average {Path('/proc/loadavg').read_text().split()[:3]}",
          flush=True)
    print(f"{'case':<18}{'N x M':>13}{'gemm s':>9}{'eval s':>9}{'ratio':>7}{'loop s':>10}{'loop/eval':>10}"
          f"{'peak MiB':>10}{'inputs MiB':>11}{'N×M f32 MiB':>12}", flush=True)
    for case in cases:
        for size in args.sizes or DEFAULT_PLAN.get(case, ["1000x5000"]):
            n, m = parse_size(size)
            t = run_worker("time", case, size, args)
            mem = {} if args.no_memory else run_worker("memory", case, size, args)
            loop = t["loop_i2t"] + t["loop_t2i"]
            ratio = t["eval"] / t["gemm"] if t["gemm"] != float("inf") else float("nan")
            peak = f"{mem['peak_bytes'] / 2**20:>10.0f}{mem['input_bytes'] / 2**20:>11.0f}" if mem else f"{'-':>10}{'-':>11}"
            print(f"{case:<18}{size:>13}{t['gemm']:>9.2f}{t['eval']:>9.2f}{ratio:>7.2f}{loop:>10.1f}"
                  f"{loop / t['eval']:>10.1f}{peak}{n * m * 4 / 2**20:>12.0f}", flush=True)


def gpu_main(cases: list[str], args: argparse.Namespace) -> None:
    """The table on a GPU: float32 and bfloat16 GEMM next to the evaluator, TFLOP/s, peak GPU memory."""
    if not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device} but torch sees no CUDA device")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; D = {args.dim}, min of {args.repeats} "
          f"interleaved rounds; float32 products with TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}",
          flush=True)
    print(f"{'case':<18}{'N x M':>13}{'GFLOP':>8}{'gemm ms':>9}{'TF/s':>6}{'bf16 ms':>9}{'TF/s':>6}"
          f"{'eval ms':>9}{'ratio':>7}{'/bf16':>7}{'recount':>8}{'loop s':>9}{'loop/eval':>10}{'peak MiB':>9}",
          flush=True)
    for case in cases:
        for size in args.sizes or GPU_PLAN.get(case, ["1000x5000"]):
            t = run_worker("time", case, size, args)
            flops = t.get("flops", float("nan"))
            loop = t["loop_i2t"] + t["loop_t2i"]
            print(f"{case:<18}{size:>13}{flops / 1e9:>8.0f}{t['gemm'] * 1e3:>9.2f}{flops / t['gemm'] / 1e12:>6.0f}"
                  f"{t['bf16'] * 1e3:>9.2f}{flops / t['bf16'] / 1e12:>6.0f}{t['eval'] * 1e3:>9.2f}"
                  f"{t['eval'] / t['gemm']:>7.2f}{t['eval'] / t['bf16']:>7.1f}{'yes' if t['recount'] else 'no':>8}"
                  f"{loop:>9.2f}{loop / t['eval']:>10.0f}{t['gpu_peak_bytes'] / 2**20:>9.0f}", flush=True)
            for label, (seconds, recount) in t.get("variants", {}).items():
                print(f"    {label:<28} eval {seconds * 1e3:8.2f} ms  ratio {seconds / t['gemm']:5.2f}"
                      f"  recount {'yes' if recount else 'no'}", flush=True)


if __name__ == "__main__":
    main()
