"""Plugins as installed distributions: a third-party method round trip and a broken plugin."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from thirdparty import ThirdPartyPlugin, installed_thirdparty, write_broken_distribution

from xmodalzoo import api
from xmodalzoo.method import MethodConfig
from xmodalzoo.plugins import PluginLoadError, discover
from xmodalzoo.recipe import load_recipe
from xmodalzoo.registry import REGISTRY

ZOO = Path(sys.executable).with_name("zoo")


def run_zoo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ZOO), *args], capture_output=True, text=True, env=env, timeout=120)


def test_thirdparty_method_is_registered_in_process(thirdparty_plugin: ThirdPartyPlugin) -> None:
    assert "demo_method" in api.list_methods()
    assert api.list_components("head", filter="demo*") == ["demo_head"]
    entry = REGISTRY.get("method", "demo_method")
    assert (entry.plugin, entry.distribution) == ("thirdparty_demo", "zoo_thirdparty_demo")
    assert issubclass(entry.config, MethodConfig)
    status = {p.name: p for p in api.plugins()}["thirdparty_demo"]
    assert (status.ok, status.version, status.components) == (True, "0.1", 2)


def test_thirdparty_recipe_validates_with_its_defaults(thirdparty_plugin: ThirdPartyPlugin, tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({"data": {"type": "shapes"}, "method": {"type": "demo_method"}}))
    recipe = load_recipe(path, ["method.text_head.temperature=0.5"])
    assert recipe.method.type == "demo_method" and recipe.method.embed_dim == 32
    assert (recipe.method.image_head.type, recipe.method.image_head.temperature) == ("demo_head", 1.0)
    assert recipe.method.text_head.temperature == 0.5
    assert recipe.method.image_encoder.model == "mobilenetv3_small_050"


def test_thirdparty_method_is_listed_by_the_console_script(thirdparty_plugin: ThirdPartyPlugin) -> None:
    proc = run_zoo("list", "methods", env=thirdparty_plugin.env())
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "demo_method" in line)
    assert "thirdparty_demo" in row and "Demo third-party method" in row
    assert "Traceback" not in proc.stderr


def test_installing_the_thirdparty_plugin_is_undone(tmp_path: Path) -> None:
    with installed_thirdparty(tmp_path):
        assert "demo_method" in api.list_methods()
    assert "demo_method" not in api.list_methods() and "demo_head" not in api.list_components("head")
    assert "zoo_thirdparty_demo" not in sys.modules
    assert "thirdparty_demo" not in {p.name for p in api.plugins()}


def test_broken_plugin_is_reported_and_the_rest_works(
    thirdparty_plugin: ThirdPartyPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_broken_distribution(thirdparty_plugin.root)
    monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "0")
    with pytest.warns(UserWarning, match=r"plugin 'broken_demo' \(zoo_broken_demo\) failed to load: ModuleNotFound"):
        discover(force=True)
    status = {p.name: p for p in api.plugins()}
    assert not status["broken_demo"].ok and status["broken_demo"].distribution == "zoo_broken_demo"
    assert "No module named 'zoo_missing_dependency_xyz'" in status["broken_demo"].error
    assert status["thirdparty_demo"].ok and "demo_method" in api.list_methods()

    env = {**thirdparty_plugin.env(), "XMODALZOO_STRICT_PLUGINS": "0"}
    proc = run_zoo("plugins", env=env)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "broken_demo" in line)
    assert "zoo_broken_demo" in row and "failed" in row and "ModuleNotFoundError" in row
    assert any("thirdparty_demo" in line and " ok " in line for line in proc.stdout.splitlines())
    assert "warning: xmodalzoo plugin 'broken_demo'" in proc.stderr and "Traceback" not in proc.stderr


def test_strict_mode_makes_the_broken_plugin_fatal(
    thirdparty_plugin: ThirdPartyPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_broken_distribution(thirdparty_plugin.root)
    monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'broken_demo' .*failed to load"):
        discover(force=True)

    proc = run_zoo("list", env={**thirdparty_plugin.env(), "XMODALZOO_STRICT_PLUGINS": "1"})
    assert proc.returncode == 2
    assert "error: plugin 'broken_demo' (distribution zoo_broken_demo) failed to load" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_console_script_exists() -> None:
    assert ZOO.is_file() and os.access(ZOO, os.X_OK), f"{ZOO}: the zoo console script is not installed"
