"""Plugins as installed distributions: a third-party method round trip and a broken plugin."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from thirdparty import (
    ThirdPartyPlugin,
    installed_distributions,
    installed_thirdparty,
    pretrained_plugin_source,
    write_broken_distribution,
    write_plugin_distribution,
)

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


# ------------------------------------------------------------------ pretrained entries, name clashes


def _status() -> dict[str, "api.PluginStatus"]:
    return {p.name: p for p in api.plugins()}


def test_pretrained_entries_of_a_thirdparty_distribution_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xmodalzoo.cli import main
    from xmodalzoo.hub.pretrained import get_pretrained, list_pretrained

    root = write_plugin_distribution(tmp_path / "site", "zoo_weights_a", {"weights_a": "zoo_weights_a:register"},
                                     "zoo_weights_a", pretrained_plugin_source("demo-weights", "demo-weights-large"))
    with installed_distributions(root, ("zoo_weights_a",)):
        assert [p.name for p in list_pretrained("demo*")] == ["demo-weights", "demo-weights-large"]
        entry = get_pretrained("demo-weights")
        assert (entry.plugin, entry.distribution, entry.repo_id, entry.method) == (
            "weights_a", "zoo_weights_a", "someone/xmodalzoo-demo-weights", "vse")
        # a plugin with only pretrained entries says so (not a bare "components=0")
        status = _status()["weights_a"]
        assert (status.ok, status.components, status.pretrained) == (True, 0, 2)

        assert main(["list", "pretrained"]) == 0
        out = capsys.readouterr().out
        row = next(line for line in out.splitlines() if "demo-weights " in line)
        assert "weights_a" in row and "someone/xmodalzoo-demo-weights" in row and "vse" in row
        assert main(["list", "pretrained", "--filter", "*large"]) == 0
        assert [line.split("│")[1].strip() for line in capsys.readouterr().out.splitlines()
                if line.startswith("│")] == ["demo-weights-large"]
        assert main(["list", "pretrained", "--filter", "x*"]) == 0
        out = capsys.readouterr().out
        assert "no entry matches the filter 'x*'" in out and "registered" not in out
        assert main(["plugins"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("│ weights_a "))
        assert [cell.strip() for cell in row.split("│")[1:7]] == ["weights_a", "zoo_weights_a", "0.1", "ok", "0", "2"]
    assert main(["list", "pretrained", "--filter", "x*"]) == 0  # nothing installed: the filter still is the reason
    assert "no entry matches the filter 'x*'" in capsys.readouterr().out


def test_duplicate_pretrained_name_names_both_distributions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodalzoo.hub.pretrained import list_pretrained

    root = tmp_path / "site"
    write_plugin_distribution(root, "zoo_weights_a", {"weights_a": "zoo_weights_a:register"}, "zoo_weights_a",
                              pretrained_plugin_source("demo-weights"))
    write_plugin_distribution(root, "zoo_weights_b", {"weights_b": "zoo_weights_b:register"}, "zoo_weights_b",
                              pretrained_plugin_source("b-only", "demo-weights", repo_prefix="other/"))
    expected = ("pretrained 'demo-weights' is registered twice: by plugin 'weights_a' (distribution zoo_weights_a) "
                "and by plugin 'weights_b' (distribution zoo_weights_b)")
    monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "0")
    with pytest.warns(UserWarning, match=r"plugin 'weights_b' \(zoo_weights_b\) failed to load"):
        with installed_distributions(root, ("zoo_weights_a", "zoo_weights_b")):
            status = _status()
            assert status["weights_a"].ok and not status["weights_b"].ok
            assert status["weights_b"].error == f"RegistryError: {expected}"
            # all or nothing: the clashing plugin's other entry is not registered either
            assert [(p.name, p.repo_id) for p in list_pretrained("demo*")] == [("demo-weights", "someone/xmodalzoo-demo-weights")]

            monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "1")
            with pytest.raises(PluginLoadError, match="zoo_weights_b") as err:
                discover(force=True)
            assert expected in str(err.value)
            monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "0")


def test_entry_point_name_declared_by_two_distributions_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "site"
    for suffix in ("a", "b"):
        write_plugin_distribution(
            root, f"zoo_dup_{suffix}", {"dup_demo": f"zoo_dup_{suffix}:register"}, f"zoo_dup_{suffix}",
            f"from xmodalzoo.heads.linear import LinearHeadConfig, build_linear_head\n\n\n"
            f"def register(r):\n    r.add('head', 'dup_head_{suffix}', build_linear_head, LinearHeadConfig)\n",
        )
    monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "0")
    with pytest.warns(UserWarning, match="plugin name 'dup_demo' is declared by two distributions"):
        with installed_distributions(root, ("zoo_dup_a", "zoo_dup_b")):
            status = _status()
            assert status["dup_demo"].ok and status["dup_demo"].distribution in {"zoo_dup_a", "zoo_dup_b"}
            loser = "zoo_dup_b" if status["dup_demo"].distribution == "zoo_dup_a" else "zoo_dup_a"
            clash = status[f"dup_demo@{loser}"]
            assert not clash.ok and clash.distribution == loser
            assert "declared by two distributions" in clash.error
            assert "zoo_dup_a" in clash.error and "zoo_dup_b" in clash.error
            # only the first distribution's components are registered
            heads = api.list_components("head", filter="dup_head_*")
            assert heads == [f"dup_head_{status['dup_demo'].distribution[-1]}"]
            assert f"dup_demo@{loser}" in REGISTRY.failed_plugins

            monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "1")
            with pytest.raises(PluginLoadError, match="declared by two distributions"):
                discover(force=True)
            monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "0")
