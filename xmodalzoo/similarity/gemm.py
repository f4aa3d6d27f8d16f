"""The engine's dense products ``a @ b.T`` on the CPU: torch's BLAS, or numpy's where that is the faster one.

PyPI's torch multiplies float32 on the CPU with MKL, which on non-Intel CPUs runs a slower code path;
numpy's wheels carry OpenBLAS.  On an AMD EPYC (2 threads) a 5,000 × 512 @ 512 × 25,000 product takes
about 0.75 s through numpy against 0.95–1.1 s through torch (``benchmarks/search_speed.py``), the
margin by which faiss (also OpenBLAS) was ahead.  The backend is fixed per machine, not timed at run
time, so two processes on one machine always compute the same bits:

* ``XMODALZOO_CPU_GEMM=torch`` (default): torch's BLAS;
* ``XMODALZOO_CPU_GEMM=numpy``: numpy's (faster for search's large blocks on AMD; in the evaluator's
  cache-sized blocks torch's OpenMP threads, still spinning after each torch op, slow it down);
* ``XMODALZOO_CPU_GEMM=auto``: numpy when torch's BLAS is MKL, the CPU is not an Intel one and
  numpy's BLAS is OpenBLAS; torch otherwise.

Only float32/float64 CPU products outside autograd take the numpy path.  There numpy's BLAS runs on
one thread and a product is split over ``torch.get_num_threads()`` pool threads, so the two libraries
never oversubscribe the cores (see :class:`_Workers`).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import RecipeError

ENV = "XMODALZOO_CPU_GEMM"
BACKENDS = ("auto", "torch", "numpy")


@functools.lru_cache(maxsize=1)
def cpu_backend() -> str:
    """``"torch"`` or ``"numpy"``: the library that multiplies float32/float64 CPU blocks (see the module)."""
    choice = os.environ.get(ENV, "torch").strip().lower() or "torch"
    if choice not in BACKENDS:
        raise RecipeError(f"{ENV}={choice!r}: expected one of {', '.join(BACKENDS)}")
    if choice != "auto":
        return choice
    mkl = torch.backends.mkl.is_available()
    return "numpy" if mkl and _cpu_vendor() not in ("GenuineIntel", "") and "openblas" in _numpy_blas() else "torch"


def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _numpy_blas() -> str:
    try:
        return str(np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]).lower()  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return ""


#: products smaller than this in rows or columns are computed on operands padded to it: OpenBLAS
#: multiplies small matrices with other kernels, whose sums can differ in the last bit from the same
#: entries of a large product (the engine needs a pair's score not to depend on its block's shape)
SMALL = 64
#: rows (or columns) per worker below which a product is not split across threads
_SPLIT_MIN = 128


class _Workers:
    """numpy's BLAS pinned to one thread, and a pool of torch's thread count to split products over.

    OpenBLAS's own threads spin for a while after each call, which on a small machine slows the
    torch work that follows every block; single-threaded calls from idle-waiting pool threads do not.
    """

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None
        self.size = 0
        self.pinned = False

    def get(self, n: int) -> ThreadPoolExecutor | None:
        if not self.pinned:
            from threadpoolctl import ThreadpoolController

            for lib in ThreadpoolController().lib_controllers:
                if lib.user_api == "blas":
                    lib.set_num_threads(1)
            self.pinned = True
        if n <= 1:
            return None
        if self.size != n:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            self.pool, self.size = ThreadPoolExecutor(n, thread_name_prefix="xmodalzoo-gemm"), n
        return self.pool


_workers = _Workers()


def _product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b.T`` on this thread, quietly (inf · 0 gives NaN without a warning, as in torch)."""
    with np.errstate(all="ignore"):
        np.matmul(a, b.T, out=out)


def _numpy_product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b.T`` through numpy, split over torch's thread count."""
    r, c = out.shape
    n = torch.get_num_threads()
    pool = _workers.get(n)
    if r < SMALL or c < SMALL:
        ra, rb = max(r, SMALL), max(c, SMALL)
        pa = np.concatenate([a, np.repeat(a[-1:], ra - r, 0)]) if ra > r else a
        pb = np.concatenate([b, np.repeat(b[-1:], rb - c, 0)]) if rb > c else b
        with np.errstate(all="ignore"):
            out[...] = (pa @ pb.T)[:r, :c]
        return
    parts = min(n, max(r, c) // _SPLIT_MIN)
    if pool is None or parts <= 1:
        _product(a, b, out)
        return
    if r >= c:
        cuts = np.linspace(0, r, parts + 1).astype(int)
        jobs = [pool.submit(_product, a[i:j], b, out[i:j]) for i, j in zip(cuts[:-1], cuts[1:])]
    else:
        cuts = np.linspace(0, c, parts + 1).astype(int)
        jobs = [pool.submit(_product, a, b[i:j], out[:, i:j]) for i, j in zip(cuts[:-1], cuts[1:])]
    for job in jobs:
        job.result()


def matmul_t(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(R, C) ``a @ b.T`` of ``a`` (R, D) and ``b`` (C, D), written into ``out`` (R, C) when given."""
    if (
        a.device.type == "cpu"
        and b.device.type == "cpu"
        and a.dtype == b.dtype
        and a.dtype in (torch.float32, torch.float64)
        and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
        and (out is None or out.stride(-1) == 1)
        and a.shape[0] > 0 and b.shape[0] > 0
        and cpu_backend() == "numpy"
    ):
        if out is None:
            out = torch.empty(a.shape[0], b.shape[0], dtype=a.dtype)
        _numpy_product(a.detach().numpy(), b.detach().numpy(), out.numpy())
        return out
    return torch.mm(a, b.t(), out=out) if out is not None else a @ b.t()
