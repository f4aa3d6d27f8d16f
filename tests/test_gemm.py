"""The engine's CPU products (xmodalzoo.similarity.gemm): both backends give a @ b.T, a score does not
depend on the shape of the block it is computed in, and a bad backend name is a one-line error."""
import pytest
import torch

from xmodalzoo.errors import RecipeError
from xmodalzoo.similarity import gemm


@pytest.fixture
def backend(monkeypatch):
    """Force one backend for a test (the choice is cached per process)."""

    def use(name):
        monkeypatch.setenv(gemm.ENV, name)
        gemm.cpu_backend.cache_clear()

    yield use
    monkeypatch.delenv(gemm.ENV, raising=False)
    gemm.cpu_backend.cache_clear()


def operands(r, c, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(r, d, generator=g, dtype=dtype), torch.randn(c, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("name", ["torch", "numpy"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 300, 64), (300, 7, 64), (700, 650, 96)])
def test_both_backends_give_the_product(backend, name, shape):
    backend(name)
    a, b = operands(*shape)
    want = (a.double() @ b.double().t()).float()
    torch.testing.assert_close(gemm.matmul_t(a, b), want, rtol=1e-5, atol=1e-4)
    out = torch.empty(shape[0], shape[1])
    assert gemm.matmul_t(a, b, out=out) is out
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-4)
    a64, b64 = a.double(), b.double()
    torch.testing.assert_close(gemm.matmul_t(a64, b64), a64 @ b64.t())


def test_numpy_scores_do_not_depend_on_the_block_shape(backend):
    """Small blocks (OpenBLAS multiplies them with other kernels), blocks split over threads and
    offset blocks give the bits of the whole product: the evaluator compares a pair's first score
    with its score in a block and recounts on any difference."""
    backend("numpy")
    a, b = operands(400, 900, 1024)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = gemm.matmul_t(a, b)
        torch.set_num_threads(2)
        assert torch.equal(gemm.matmul_t(a, b), whole)  # split over two pool threads
        for r0, r1, c0, c1 in [(0, 16, 0, 16), (100, 116, 500, 516), (3, 40, 7, 900), (0, 400, 13, 29)]:
            assert torch.equal(gemm.matmul_t(a[r0:r1], b[c0:c1]), whole[r0:r1, c0:c1]), (r0, r1, c0, c1)
    finally:
        torch.set_num_threads(threads)


def test_autograd_and_other_devices_stay_with_torch(backend):
    backend("numpy")
    a, b = operands(70, 80, 16)
    a.requires_grad_(True)
    out = gemm.matmul_t(a, b)
    out.sum().backward()  # a numpy product would have cut the graph
    torch.testing.assert_close(a.grad, b.sum(0).expand(70, 16))


def test_auto_picks_numpy_only_for_mkl_off_intel(backend, monkeypatch):
    backend("auto")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)
    monkeypatch.setattr(gemm, "_numpy_blas", lambda: "scipy-openblas")
    for vendor, want in (("AuthenticAMD", "numpy"), ("GenuineIntel", "torch"), ("", "torch")):
        monkeypatch.setattr(gemm, "_cpu_vendor", lambda v=vendor: v)
        gemm.cpu_backend.cache_clear()
        assert gemm.cpu_backend() == want, vendor
    monkeypatch.setattr(gemm, "_numpy_blas", lambda: "accelerate")
    monkeypatch.setattr(gemm, "_cpu_vendor", lambda: "AuthenticAMD")
    gemm.cpu_backend.cache_clear()
    assert gemm.cpu_backend() == "torch"


def test_a_bad_backend_name_is_a_clear_error(backend):
    backend("openblas")
    with pytest.raises(RecipeError, match="XMODALZOO_CPU_GEMM='openblas': expected one of auto, torch, numpy"):
        gemm.cpu_backend()


@pytest.mark.parametrize("name", ["torch", "numpy"])
def test_a_row_strided_out_gets_the_bits_of_a_packed_one(backend, name):
    """The engine's reused product buffer starts each row on a 64-byte line (a faster GEMM):
    a row-strided ``out`` must hold the same bits as a packed one, written in place."""
    backend(name)
    a, b = operands(300, 653, 96)
    packed = gemm.matmul_t(a, b)
    store = torch.full((300, 656), 7.0)
    out = store[:, :653]
    assert gemm.matmul_t(a, b, out=out) is out
    assert torch.equal(out, packed)
    assert bool((store[:, 653:] == 7.0).all())  # the padding is left alone
