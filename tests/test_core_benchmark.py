"""benchmarks/similarity_engine.py: lazy case files, a clean error for unknown cases, warm-up before timing."""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "similarity_engine.py"

WORKING_CASES = '''
from xmodalzoo.embeddings import PointEmbedding

def build(n, m, d, device):
    raise AssertionError("not built in these tests")

CASES = {"fake_a": {"build": build, "loop": None}, "fake_b": {"build": build, "loop": None}}
'''


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark module, reading its case files from ``tmp_path``: one that needs a missing plugin
    and one that works."""
    spec = importlib.util.spec_from_file_location("similarity_engine_benchmark", BENCHMARK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "similarity_cases_aaa_missing.py").write_text("import xmodalzoo_not_installed_xyz\nCASES = {}\n")
    (tmp_path / "similarity_cases_bbb_ok.py").write_text(WORKING_CASES)
    monkeypatch.setattr(module, "HERE", tmp_path)
    return module


def test_builtin_case_imports_no_case_file(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    real = bench.import_case_file
    monkeypatch.setattr(bench, "import_case_file", lambda path: imported.append(path.name) or real(path))
    cases, broken = bench.load_cases(["cosine"])
    assert list(cases) == ["cosine"] and broken == {} and imported == []


def test_missing_plugin_only_skips_its_cases(bench: ModuleType) -> None:
    cases, broken = bench.load_cases(None)
    assert list(cases) == ["cosine", "fake_a", "fake_b"]
    assert list(broken) == ["similarity_cases_aaa_missing.py"]
    assert "No module named 'xmodalzoo_not_installed_xyz'" in broken["similarity_cases_aaa_missing.py"]
    cases, _ = bench.load_cases(["fake_b", "cosine"])
    assert list(cases) == ["fake_b", "cosine"]


def test_unknown_case_is_one_clean_error(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["similarity_engine.py", "--cases", "cosine,cosin", "--n", "8", "--m", "8"])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("error: unknown case 'cosin'; available: cosine, fake_a, fake_b")
    assert "not importable: similarity_cases_aaa_missing.py (ModuleNotFoundError" in line
    assert "Traceback" not in captured.err and captured.out == ""


def test_measure_warms_up_both_modes_before_timing(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, int]] = []
    run_engine = bench.run_engine
    loop = bench.BUILTIN_CASES["cosine"]["loop"]

    def engine(sim, q, g, max_bytes, device):  # type: ignore[no-untyped-def]
        events.append(("engine", len(q)))
        run_engine(sim, q, g, max_bytes, device)

    def looping(sim, q, g, n_queries):  # type: ignore[no-untyped-def]
        events.append(("loop", n_queries))
        loop(sim, q, g, n_queries)

    monkeypatch.setattr(bench, "run_engine", engine)
    monkeypatch.setitem(bench.BUILTIN_CASES, "cosine", {"build": bench.build_cosine, "loop": looping})
    args = argparse.Namespace(n=100, m=3000, d=8, device="cpu", max_bytes=1 << 20, loop_queries=10)
    result = bench.measure("cosine", "loop", args)
    # warm-up: both modes on a slice (64 queries, 2 loop queries); then only the timed loop
    assert events == [("engine", 64), ("loop", 2), ("loop", 10)]
    assert result["queries"] == 10
    events.clear()
    bench.measure("cosine", "engine", args)
    assert events == [("engine", 64), ("loop", 2), ("engine", 100)]
