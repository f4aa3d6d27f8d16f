"""The engine's dense products ``a @ b.T`` on the CPU: torch's BLAS, oneDNN's, or numpy's.

PyPI's torch multiplies float32 on the CPU with MKL, which on non-Intel CPUs runs a slower code path
(AVX2 kernels on an AVX-512 AMD EPYC); torch's bundled oneDNN and numpy's OpenBLAS pick their kernels
by instruction set, not vendor.  On this 2-core AMD EPYC (Zen 4) a 5,000 × 512 @ 512 × 25,000
product runs at 5.7–8.4 ms/GFLOP through MKL, 5.0–5.6 through oneDNN, 5.1–6.1 through OpenBLAS (faiss's BLAS);
see ``benchmarks/cpu_gemm.py``.  The backend is fixed per machine, never timed at run time, so
two processes on one machine always compute the same bits:

* ``XMODALZOO_CPU_GEMM=auto`` (default): ``onednn`` when torch's BLAS is MKL, the CPU is not an Intel
  one and torch's oneDNN linear is usable; ``torch`` otherwise;
* ``XMODALZOO_CPU_GEMM=torch``: torch's BLAS (``torch.mm``);
* ``XMODALZOO_CPU_GEMM=onednn``: torch's oneDNN linear (``torch.ops.mkldnn._linear_pointwise``), on
  torch's own threads; float32 only (float64 stays with torch);
* ``XMODALZOO_CPU_GEMM=numpy``: numpy's BLAS, one BLAS thread per pool thread (faster for search's
  large blocks on AMD than MKL; in the evaluator's cache-sized blocks torch's OpenMP threads, still
  spinning after each torch op, slow it down).

Only float32 (numpy: float32/float64) CPU products outside autograd take the oneDNN or numpy paths.
Both pad small products (numpy: under :data:`SMALL` rows or columns; oneDNN: single rows or columns)
because those kernels round differently from the large ones, and the engine needs a pair's score not
to depend on its block's shape.  The numpy path splits a product over ``torch.get_num_threads()`` pool threads, so the two
libraries never oversubscribe the cores (see :class:`_Workers`).
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
BACKENDS = ("auto", "torch", "onednn", "numpy")
#: the largest product worth asking a backend that returns fresh products (oneDNN) for, block after
#: block: glibc serves allocations up to its mmap threshold (which grows to at most 32 MiB; 1 MiB
#: is left for the allocator's own headers) from the heap, where a freed block is reused; a larger
#: one is a fresh mapping every time, whose pages fault in on first touch (mil_max K = 4 at
#: 1K × 5K: 60 MiB products made the evaluator's GEMM 1.5× slower)
FRESH_PRODUCT_BYTES = 31 << 20


def fresh_product_budget(hot_bytes: int, pair_bytes: int, fresh_pair_bytes: int) -> int:
    """``hot_bytes``, lowered so that a block of ``pair_bytes`` per pair keeps its fresh product
    (``fresh_pair_bytes`` per pair; 0: none, the budget unchanged) within :data:`FRESH_PRODUCT_BYTES`."""
    if fresh_pair_bytes <= 0:
        return hot_bytes
    return min(hot_bytes, FRESH_PRODUCT_BYTES * pair_bytes // fresh_pair_bytes)


@functools.lru_cache(maxsize=1)
def cpu_backend() -> str:
    """``"torch"``, ``"onednn"`` or ``"numpy"``: the library that multiplies float32 CPU blocks (see the module)."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise RecipeError(f"{ENV}={choice!r}: expected one of {', '.join(BACKENDS)}")
    if choice == "onednn" and not _onednn_usable():
        raise RecipeError(f"{ENV}=onednn: this torch has no usable oneDNN linear (torch.ops.mkldnn._linear_pointwise)")
    if choice != "auto":
        return choice
    mkl = torch.backends.mkl.is_available()
    return "onednn" if mkl and _cpu_vendor() not in ("GenuineIntel", "") and _onednn_usable() else "torch"


def cpuinfo(field: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo (e.g. ``"vendor_id"``, ``"model name"``); "" if none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_vendor() -> str:
    return cpuinfo("vendor_id")


#: numpy path: products smaller than this in rows or columns are computed on operands padded to it:
#: OpenBLAS multiplies small matrices with other kernels, whose sums can differ in the last bit from
#: the same entries of a large product (the engine needs a pair's score not to depend on its block's
#: shape)
SMALL = 64
#: OpenBLAS kernel families (threadpoolctl's ``architecture``) whose float32 products keep each
#: entry's bits whatever the product's shape, once padded to :data:`SMALL`: its AVX-512 kernels.
#: Its Haswell (AVX2) kernels, which OpenBLAS 0.3.31 also picks on AMD Zen 4, round some entries
#: differently by shape (0.6 % of a 2,000 × 3,000 block against a 2,000 × 6,000 one, D = 96)
OPENBLAS_SHAPE_FREE = ("skylakex", "cooperlake", "sapphirerapids")
#: oneDNN path: the same, for its single-row and single-column products (matrix-vector kernels); from
#: 2 × 2 up its products have the bits of the whole (checked for every shape up to 65 × 333 against
#: 700 × 1,500 products, D = 3 to 4,096, 1 and 2 threads)
ONEDNN_SMALL = 2


def numpy_blas() -> str:
    """numpy's BLAS and the kernel family it picked, as threadpoolctl reports them (e.g.
    ``"openblas SkylakeX"``), or ``""`` when it reports none."""
    from threadpoolctl import threadpool_info

    np.ones(1) @ np.ones(1)  # numpy's BLAS is loaded lazily by some builds
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return f"{lib.get('internal_api', '')} {lib.get('architecture') or ''}".strip()
    return ""


def numpy_keeps_bits() -> bool:
    """Whether the ``numpy`` backend's scores keep their bits whatever the block's shape (OpenBLAS
    with one of :data:`OPENBLAS_SHAPE_FREE`); elsewhere the evaluator recounts (a second pass)."""
    name, _, arch = numpy_blas().partition(" ")
    return name == "openblas" and arch.lower() in OPENBLAS_SHAPE_FREE


def _linear(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` through torch's oneDNN linear (no bias, no post-op)."""
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")


@functools.lru_cache(maxsize=1)
def _onednn_usable() -> bool:
    """Whether this torch has a oneDNN linear that multiplies float32 correctly (a private op: probed)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(SMALL + 3, 37, generator=g), torch.randn(SMALL + 5, 37, generator=g)
        with torch.no_grad():
            got = _linear(a, b)
        want = (a.double() @ b.double().t()).float()
        return tuple(got.shape) == tuple(want.shape) and bool(torch.allclose(got, want, rtol=1e-4, atol=1e-4))
    except Exception:  # noqa: BLE001 - any failure of a private op means: not usable
        return False


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


def _padded_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x[-1:].expand(rows - x.shape[0], -1)]) if x.shape[0] < rows else x


def _onednn_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` through oneDNN, single-row/column products padded to :data:`ONEDNN_SMALL` (a fresh tensor)."""
    r, c = a.shape[0], b.shape[0]
    a, b = a.contiguous(), b.contiguous()
    if r < ONEDNN_SMALL or c < ONEDNN_SMALL:
        return _linear(_padded_rows(a, ONEDNN_SMALL), _padded_rows(b, ONEDNN_SMALL))[:r, :c]
    return _linear(a, b)


def _takes_onednn(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.device.type == "cpu"
        and b.device.type == "cpu"
        and a.dtype == b.dtype == torch.float32
        and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
        and a.shape[0] > 0 and b.shape[0] > 0 and a.shape[1] > 0
        and cpu_backend() == "onednn"
    )


def writes_into_out(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether :func:`matmul_t` of these operands writes into a given ``out`` (the oneDNN path returns
    a fresh tensor: its linear has no ``out=`` form, and a copy would cost more than the allocation)."""
    return not _takes_onednn(a, b)


def matmul_t(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(R, C) ``a @ b.T`` of ``a`` (R, D) and ``b`` (C, D).

    With ``out`` (R, C; ``out.stride(-1) == 1``) the product is written there and ``out`` returned,
    unless :func:`writes_into_out` says otherwise: then the product is a fresh tensor and ``out``
    is left alone.  Use the returned tensor.
    """
    if _takes_onednn(a, b):
        return _onednn_product(a, b)
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
