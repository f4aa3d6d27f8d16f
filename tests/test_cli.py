"""The ``zoo`` command, run as users run it: ``python -m xmodalzoo`` and the ``zoo`` console script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from thirdparty import ThirdPartyPlugin

from xmodalzoo import __version__
from xmodalzoo.cli import main

ZOO = Path(sys.executable).with_name("zoo")
VERBS = ["validate", "schema", "list", "plugins", "info", "data", "train", "eval"]


def run(*args: str, env: dict[str, str] | None = None, script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(ZOO)] if script else [sys.executable, "-m", "xmodalzoo"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=120)


def first_column(table: str) -> list[str]:
    """The first cell of every row of a rich table."""
    return [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]


def no_traceback(proc: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@pytest.fixture
def demo_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({"name": "demo", "data": {"type": "shapes", "train_size": 8},
                                    "method": {"type": "demo_method"}, "train": {"epochs": 2}}))
    return path


# ------------------------------------------------------------------------- help and version


def test_help_lists_every_verb_and_each_verb_has_help() -> None:
    proc = run("--help", script=True)
    assert proc.returncode == 0 and no_traceback(proc)
    for verb in VERBS:
        assert verb in proc.stdout
    for args in [[verb] for verb in VERBS if verb != "data"] + [["data", "preview"]]:
        sub = run(*args, "--help")
        assert sub.returncode == 0, (args, sub.stderr)
        assert sub.stdout.startswith(f"usage: zoo {' '.join(args)}"), args


def test_version_and_no_verb() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"zoo {__version__}"
    proc = run()
    assert proc.returncode == 2 and proc.stdout.startswith("usage: zoo")


def test_cli_import_stays_light() -> None:
    code = "import sys, xmodalzoo.cli; print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# ------------------------------------------------------------------------- validate


def test_validate_ok_prints_a_summary(thirdparty_plugin: ThirdPartyPlugin, demo_recipe: Path) -> None:
    proc = run("validate", str(demo_recipe), "--set", "method.embed_dim=64", env=thirdparty_plugin.env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"OK {demo_recipe}"
    for expected in ("name: demo", "data: shapes", "method: demo_method", "method.image_head: demo_head",
                     "method.loss: triplet", "train: 2 epochs, batch 128"):
        assert any(line.strip() == expected or line.strip().startswith(expected) for line in lines), expected


def test_validate_errors_exit_2_with_one_line_each(thirdparty_plugin: ThirdPartyPlugin, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"data": {"type": "shapes"}, "method": {
        "type": "demo_method", "embed_dim": "big", "image_head": {"type": "demo_haed"}, "text_head": {"type": "demo_head", "temprature": 2}}}))
    proc = run("validate", str(path), env=thirdparty_plugin.env())
    assert proc.returncode == 2 and no_traceback(proc) and proc.stdout == ""
    lines = [line.strip() for line in proc.stderr.splitlines()]
    assert lines[0] == f"error: {path}: method.embed_dim: Input should be a valid integer, unable to parse string as an integer"
    assert any(line.startswith(f"{path}: method.image_head: unknown head 'demo_haed'. Did you mean 'demo_head'") for line in lines)
    assert f"{path}: method.text_head.temprature: unknown key 'temprature'. Did you mean 'temperature'?" in lines
    assert len(lines) == 3


@pytest.mark.parametrize("name, text, args, expected", [
    ("empty.yaml", "", [], "{path}: the file is empty"),
    ("syntax.yaml", "data: {type: shapes\n", [], "{path}:2:1: invalid YAML: "),
    ("list.yaml", "- 1\n", [], "{path}: expected a mapping at the top level"),
    ("set.yaml", "data: {type: shapes}\n", ["--set", "train.epochs"], "--set 'train.epochs': expected KEY.PATH=VALUE"),
])
def test_validate_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
                                args: list[str], expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert main(["validate", str(path), *args]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("error: " + expected.format(path=path)), line
    assert captured.out == ""


def test_missing_recipe_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    proc = run("validate", str(path), script=True)
    assert proc.returncode == 2 and no_traceback(proc) and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {path}: no such file"]


def test_debug_env_shows_the_traceback(tmp_path: Path) -> None:
    import os

    proc = run("validate", str(tmp_path / "missing.yaml"), env={**os.environ, "XMODALZOO_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "RecipeError" in proc.stderr


# ------------------------------------------------------------------------- schema


def test_schema_is_json_with_the_installed_plugins(thirdparty_plugin: ThirdPartyPlugin) -> None:
    proc = run("schema", env=thirdparty_plugin.env(), script=True)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "demo_method" in schema["properties"]["method"]["discriminator"]["mapping"]
    assert "shapes" in schema["properties"]["data"]["discriminator"]["mapping"]


def test_schema_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "recipe.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["title"] == "Recipe"
    assert capsys.readouterr().out == ""



def test_schema_creates_missing_folders(tmp_path: Path) -> None:
    out = tmp_path / ".vscode" / "deeper" / "recipe.schema.json"  # the documented .vscode/ use
    proc = run("schema", "-o", str(out), script=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["title"] == "Recipe" and proc.stdout == ""


# ------------------------------------------------------------------------- list, plugins, info


def test_list_components_with_filter(thirdparty_plugin: ThirdPartyPlugin, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "components", "head", "--filter", "demo*"]) == 0
    out = capsys.readouterr().out
    assert first_column(out) == ["demo_head"] and "thirdparty_demo" in out
    assert main(["list", "components", "--filter", "demo_*"]) == 0
    assert first_column(capsys.readouterr().out) == ["head", "method"]  # all kinds, with a kind column
    assert main(["list", "methods", "--filter", "nothing*"]) == 0
    assert "nothing registered matches 'nothing*'" in capsys.readouterr().out


def test_list_errors_and_pretrained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "components", "heads"]) == 2
    assert "unknown component kind 'heads'" in capsys.readouterr().err
    assert main(["list", "pretrained"]) == 0
    assert "pretrained models" in capsys.readouterr().out


def test_plugins_table(capsys: pytest.CaptureFixture[str]) -> None:
    from xmodalzoo.registry import REGISTRY

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "components" in out and "pretrained" in out
    core = next(line for line in out.splitlines() if line.startswith("│ xmodalzoo "))
    assert __version__ in core and " ok " in core
    cells = [cell.strip() for cell in core.split("│")[1:-1]]
    ours = sum(e.plugin == "xmodalzoo" for kind in REGISTRY.entries.values() for e in kind.values())
    assert cells[4:6] == [str(ours), "0"]


def test_info_shows_fields(thirdparty_plugin: ThirdPartyPlugin, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "demo_head"]) == 0
    out = capsys.readouterr().out
    assert "head demo_head" in out and "zoo_thirdparty_demo" in out
    row = next(line for line in out.splitlines() if "temperature" in line)
    assert "float" in row and "1.0" in row and "divides the projected feature" in row
    assert main(["info", "demo_method"]) == 0
    out = capsys.readouterr().out
    assert "embed_dim" in out and "head config" in out


def test_info_unknown_name(thirdparty_plugin: ThirdPartyPlugin, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "demo_methd"]) == 2
    err = capsys.readouterr().err
    assert "unknown component 'demo_methd'. Did you mean 'demo_method'" in err
    assert main(["info", "cosin"]) == 2
    (line,) = capsys.readouterr().err.splitlines()  # one line: suggestions, then everything available
    assert line.startswith("error: unknown component 'cosin'. Did you mean 'cosine'")
    available = line.split("Available: ", 1)[1].split(".", 1)[0].split(", ")
    assert {"cosine", "demo_method", "demo_head", "triplet", "shapes"} <= set(available)
    assert available == sorted(available)


# ------------------------------------------------------------------------- data preview


def test_data_preview_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid.png"
    overrides = ["--set", "train_size=6", "--set", "image_size=32", "--set", "cache=false"]
    assert main(["data", "preview", "shapes", "-o", str(out), "--n", "4", *overrides]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "4 images" in capsys.readouterr().out
    assert main(["data", "preview", "shapes", "-o", str(out), "--set", "train_sise=6"]) == 2
    assert "dataset 'shapes': train_sise: unknown key 'train_sise'. Did you mean 'train_size'?" in capsys.readouterr().err
    assert main(["data", "preview", "shapez", "-o", str(out)]) == 2
    assert "unknown dataset 'shapez'. Did you mean 'shapes'?" in capsys.readouterr().err
