"""Where one evaluation's time goes: the streaming evaluator under ``torch.profiler``, top operations.

Builds one case of ``benchmarks/similarity_engine.py`` (or a plugin's ``similarity_cases_*.py``) at
N × M (5 captions per image, D = 1024, the caption's own image its positive), runs the evaluator once
to warm up, then once under the profiler, and prints the operations that took the most time on the
device (self CUDA time on a GPU, self CPU time on the CPU), with their call counts, next to the
wall-clock time of the profiled call and of an unprofiled one.

    python benchmarks/evaluator_profile.py --device cuda --case cosine --size 5000x25000
    python benchmarks/evaluator_profile.py --case csd --size 1000x5000 --top 15
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluator_speed as speed  # noqa: E402
import similarity_engine as bench  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="cosine")
    ap.add_argument("--size", default="5000x25000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    from xmodalzoo.eval.streaming import stream_fold_metrics

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device} but torch sees no CUDA device")
    n, m = speed.parse_size(args.size)
    sim, img, cap = bench.load_cases([args.case])[0][args.case]["build"](n, m, args.dim, device)
    sim.eval()
    c2i, pos = (t.to(device) for t in speed.fold_targets(n, m))

    def run() -> float:
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        stream_fold_metrics(sim, img, cap, c2i, positives=pos, device=device)
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run()
    plain = min(run() for _ in range(3))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        profiled = run()
    key = "self_cuda_time_total" if gpu else "self_cpu_time_total"
    print(f"{args.case} {args.size} on {device}: {plain * 1e3:.2f} ms (min of 3), {profiled * 1e3:.2f} ms profiled")
    print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=48))


if __name__ == "__main__":
    main()
