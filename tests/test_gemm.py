"""The engine's CPU products (xmodalzoo.similarity.gemm): every backend gives a @ b.T, a score does not
depend on the shape of the block it is computed in (nor on the thread count), and a bad backend name
is a one-line error."""
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


BACKENDS = ["torch", "numpy"] + (["onednn"] if gemm._onednn_usable() else [])


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 300, 64), (300, 7, 64), (700, 650, 96)])
def test_every_backend_gives_the_product(backend, name, shape):
    backend(name)
    a, b = operands(*shape)
    want = (a.double() @ b.double().t()).float()
    torch.testing.assert_close(gemm.matmul_t(a, b), want, rtol=1e-5, atol=1e-4)
    out = torch.empty(shape[0], shape[1])
    got = gemm.matmul_t(a, b, out=out)
    assert (got is out) == gemm.writes_into_out(a, b) == (name != "onednn")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    a64, b64 = a.double(), b.double()
    torch.testing.assert_close(gemm.matmul_t(a64, b64), a64 @ b64.t())


@pytest.mark.parametrize("name", [n for n in BACKENDS if n != "torch"])
@pytest.mark.parametrize("d", [37, 1024])
def test_scores_do_not_depend_on_the_block_shape(backend, name, d):
    """Small blocks (OpenBLAS and oneDNN multiply them with other kernels: a single row with a
    matrix-vector one), blocks split over threads and offset blocks give the bits of the whole
    product: the evaluator compares a pair's first score with its score in a block and recounts on
    any difference."""
    if name == "numpy" and not gemm.numpy_keeps_bits():
        pytest.skip(f"numpy's BLAS ({gemm.numpy_blas()}) rounds by shape: the evaluator recounts")
    backend(name)
    a, b = operands(400, 900, d)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = gemm.matmul_t(a, b)
        torch.set_num_threads(2)
        assert torch.equal(gemm.matmul_t(a, b), whole)  # over two threads
        spans = [(0, 1, 0, 900), (399, 400, 3, 4), (0, 16, 0, 16), (100, 116, 500, 516), (3, 40, 7, 900),
                 (0, 400, 13, 29), (0, 400, 0, 1), (5, 69, 100, 164), (1, 400, 1, 900)]
        for r0, r1, c0, c1 in spans:
            assert torch.equal(gemm.matmul_t(a[r0:r1], b[c0:c1]), whole[r0:r1, c0:c1]), (r0, r1, c0, c1)
    finally:
        torch.set_num_threads(threads)


def test_numpy_keeps_bits_only_on_the_shape_free_openblas_kernels(monkeypatch):
    for reported, keeps in [("openblas SkylakeX", True), ("openblas SapphireRapids", True),
                            ("openblas Haswell", False), ("openblas Zen", False), ("mkl", False), ("", False)]:
        monkeypatch.setattr(gemm, "numpy_blas", lambda reported=reported: reported)
        assert gemm.numpy_keeps_bits() is keeps, reported
    monkeypatch.undo()
    assert gemm.numpy_blas().split(" ")[0] in ("openblas", "mkl", "blis", "")


@pytest.mark.skipif("onednn" not in BACKENDS, reason="this torch has no usable oneDNN linear")
def test_onednn_keeps_non_finite_and_subnormal_products(backend):
    """inf · 0 is NaN and subnormal products are not flushed to zero, as with torch's BLAS."""
    backend("onednn")
    a, b = torch.full((70, 3), float("inf")), torch.zeros(80, 3)
    assert bool(gemm.matmul_t(a, b).isnan().all())
    tiny = torch.full((70, 1), 1e-20)
    assert gemm.matmul_t(tiny, tiny)[0, 0].item() == (tiny @ tiny.t())[0, 0].item() > 0


def test_autograd_and_other_devices_stay_with_torch(backend):
    backend("numpy")
    a, b = operands(70, 80, 16)
    a.requires_grad_(True)
    out = gemm.matmul_t(a, b)
    out.sum().backward()  # a numpy product would have cut the graph
    torch.testing.assert_close(a.grad, b.sum(0).expand(70, 16))


def test_auto_picks_onednn_only_for_mkl_off_intel(backend, monkeypatch):
    backend("auto")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)
    monkeypatch.setattr(gemm, "_onednn_usable", lambda: True)
    for vendor, want in (("AuthenticAMD", "onednn"), ("GenuineIntel", "torch"), ("", "torch")):
        monkeypatch.setattr(gemm, "_cpu_vendor", lambda v=vendor: v)
        gemm.cpu_backend.cache_clear()
        assert gemm.cpu_backend() == want, vendor
    monkeypatch.setattr(gemm, "_onednn_usable", lambda: False)
    monkeypatch.setattr(gemm, "_cpu_vendor", lambda: "AuthenticAMD")
    gemm.cpu_backend.cache_clear()
    assert gemm.cpu_backend() == "torch"
    monkeypatch.setattr(gemm, "_onednn_usable", lambda: True)
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)
    gemm.cpu_backend.cache_clear()
    assert gemm.cpu_backend() == "torch"


def test_auto_is_the_default(backend, monkeypatch):
    monkeypatch.delenv(gemm.ENV, raising=False)
    monkeypatch.setattr(gemm, "_cpu_vendor", lambda: "GenuineIntel")
    gemm.cpu_backend.cache_clear()
    assert gemm.cpu_backend() == "torch"
    monkeypatch.setattr(gemm, "_cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(gemm, "_onednn_usable", lambda: True)
    gemm.cpu_backend.cache_clear()
    assert gemm.cpu_backend() == ("onednn" if torch.backends.mkl.is_available() else "torch")


def test_a_bad_backend_name_is_a_clear_error(backend):
    backend("openblas")
    with pytest.raises(RecipeError, match="XMODALZOO_CPU_GEMM='openblas': expected one of auto, torch, onednn, numpy"):
        gemm.cpu_backend()


def test_onednn_without_a_usable_linear_is_a_clear_error(backend, monkeypatch):
    monkeypatch.setattr(gemm, "_onednn_usable", lambda: False)
    backend("onednn")
    with pytest.raises(RecipeError, match="XMODALZOO_CPU_GEMM=onednn: this torch has no usable oneDNN linear"):
        gemm.cpu_backend()


def test_float64_and_autograd_stay_with_torch_under_onednn(backend):
    backend("onednn")
    a, b = operands(70, 80, 16, dtype=torch.float64)
    assert gemm.writes_into_out(a, b)
    assert torch.equal(gemm.matmul_t(a, b), a @ b.t())
    a, b = operands(70, 80, 16)
    a.requires_grad_(True)
    gemm.matmul_t(a, b).sum().backward()
    torch.testing.assert_close(a.grad, b.sum(0).expand(70, 16))


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


def test_the_backend_benchmark_prints_every_backend_per_block_shape():
    """benchmarks/cpu_gemm.py (the measurement behind ``auto``) runs and prints one row per shape."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_gemm.py"
    run = subprocess.run([sys.executable, str(script), "--queries", "130", "--gallery", "300", "--dim", "16",
                          "--shapes", "64x100", "130x300", "--rounds", "1", "--threads", "1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "auto picks" in lines[0] and "torch ms/GFLOP" in lines[1] and "numpy ms/GFLOP" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["64x100", "130x300"]
