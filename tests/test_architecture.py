"""The structure of the package: no import cycle among core modules, plugins on the declared surface
only, leaf modules that stay leaves, one owner for the run directory's file names."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "xmodalzoo"
FIRST_PARTY = sorted(ROOT.glob("plugins/*/xmodalzoo_*"))


def module_name(path: Path, base: Path = ROOT) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(path: Path, name: str, known: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every module that ``path`` (module ``name``) imports, at the top or inside a function, except
    under ``if TYPE_CHECKING:``.  ``from pkg import x`` counts ``pkg.x`` when that is a module of
    ``known``, else ``pkg``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found


def core_import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    graph = {}
    for name, path in modules.items():
        # importing a package's module runs the package's __init__ too, but that is no edge of ours:
        # an edge is an import statement written in the module
        graph[name] = {m for m in imported_modules(path, name, set(modules)) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_core_modules() -> None:
    graph = core_import_graph()
    assert len(graph) > 50 and "xmodalzoo.registry" in graph["xmodalzoo.plugins"]  # the graph is read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def room(module: str) -> str:
    """The room of a core module: its sub-package (``xmodalzoo.train``), or itself at the top level."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and (CORE / parts[1]).is_dir()) else module


def test_no_import_cycle_among_rooms() -> None:
    """Sub-packages and top-level modules import each other in one direction only (e.g. ``train``
    may import ``hub`` and ``recipe`` may import ``train.config``, but not back)."""
    graph: dict[str, set[str]] = {}
    for a, targets in core_import_graph().items():
        graph.setdefault(room(a), set()).update(room(b) for b in targets if room(b) != room(a))
    for targets in list(graph.values()):
        for t in targets:
            graph.setdefault(t, set())
    assert {"xmodalzoo.train", "xmodalzoo.hub"} <= set(graph) and "xmodalzoo.hub" in graph["xmodalzoo.train"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between rooms: " + " -> ".join(cycle or [])


def test_every_core_module_imports() -> None:
    for name in core_modules():
        if name.endswith("__main__"):
            continue
        importlib.import_module(name)


@pytest.mark.parametrize("leaf", ["xmodalzoo.errors", "xmodalzoo.version"])
def test_leaf_modules_import_only_the_standard_library(leaf: str) -> None:
    path = core_modules()[leaf]
    third_party = {m.split(".")[0] for m in imported_modules(path, leaf)} - set(sys.stdlib_module_names) - {"__future__"}
    assert not third_party, f"{leaf} imports {sorted(third_party)}"


def test_the_command_line_does_not_import_torch() -> None:
    code = "import sys, xmodalzoo.cli, xmodalzoo.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_first_party_plugins_import_only_the_plugin_surface() -> None:
    assert FIRST_PARTY, "no first-party plugin packages found"
    offenders = []
    for package in FIRST_PARTY:
        for path in sorted(package.rglob("*.py")):
            for mod in imported_modules(path, module_name(path, package.parent)):
                if (mod == "xmodalzoo" or mod.startswith("xmodalzoo.")) and not mod.startswith("xmodalzoo.plugin_api"):
                    offenders.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not offenders, "plugins import core modules besides xmodalzoo.plugin_api:\n" + "\n".join(offenders)


def test_plugin_surface_exports_what_it_declares() -> None:
    from xmodalzoo import plugin_api

    missing = [n for n in plugin_api.__all__ if not hasattr(plugin_api, n)]
    assert not missing
    # the names DivE and HREM are written against (the surface as first declared) stay
    first = {"Registrar", "Component", "ComponentConfig", "Method", "MethodConfig", "assemble_method", "Embedding",
             "GaussianEmbedding", "PointEmbedding", "SetEmbedding", "EncoderOutput", "ImageEncoder", "TextEncoder",
             "TextBatch", "Similarity", "Loss", "LossContext", "LossOutput", "TripletConfig", "TripletLoss", "Batch",
             "BatchModule", "CaptionBatchSampler", "encode_captions", "encode_images"}
    assert first <= set(plugin_api.__all__)


RUN_FILE_NAMES = ("recipe.resolved.yaml", "environment.json", "metrics.jsonl", "checkpoints/", "eval_results",
                  "DONE")


def test_run_file_names_are_written_only_by_the_run_directory() -> None:
    """Outside :mod:`xmodalzoo.rundir`, no string that is a path (no spaces: help texts and docstrings
    may name the files) holds a run's file names."""
    offenders = []
    for name, path in core_modules().items():
        if name == "xmodalzoo.rundir":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if " " not in node.value and any(f in node.value for f in RUN_FILE_NAMES):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert not offenders, "\n".join(offenders)
