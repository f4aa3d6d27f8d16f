"""The README's third-party plugin example, taken from README.md itself: its marked code blocks
(``<!-- plugin-example: PATH -->`` above each) are written into a temporary package, pip-installed
(offline, into a folder of its own that only the child processes see), listed by the real ``zoo``
console script and trained a few steps with its recipe."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
ZOO = str(Path(sys.executable).with_name("zoo"))
BLOCK = re.compile(r"<!-- plugin-example: (?P<path>\S+) -->\s*\n```[\w-]*\n(?P<body>.*?)\n```", re.DOTALL)


def readme_blocks(text: str) -> dict[str, str]:
    """The README's plugin-example blocks: relative path -> file content."""
    return {m["path"]: m["body"] + "\n" for m in BLOCK.finditer(text)}


def test_the_readme_marks_a_complete_example():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert set(blocks) == {"my_zoo_plugin/__init__.py", "pyproject.toml", "my_method_shapes.yaml"}
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads(blocks["pyproject.toml"])
    assert {"name", "version", "dependencies"} <= set(project["project"])
    assert project["build-system"]["build-backend"]
    assert project["project"]["entry-points"]["xmodalzoo.plugins"] == {"my_method": "my_zoo_plugin:register"}


@pytest.mark.slow
def test_the_readme_plugin_installs_lists_and_trains(tmp_path):
    package = tmp_path / "my-zoo-plugin"
    for rel, body in readme_blocks(README.read_text(encoding="utf-8")).items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(body, encoding="utf-8")
    site = tmp_path / "site"  # the install target: removed with tmp_path, seen only through PYTHONPATH
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert install.returncode == 0, install.stdout + install.stderr
    assert list(site.glob("my_zoo_plugin-0.1.0.dist-info"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               XMODALZOO_CACHE=str(tmp_path / "cache"), XMODALZOO_STRICT_PLUGINS="1", OMP_NUM_THREADS="1")

    listed = subprocess.run([ZOO, "list", "methods"], capture_output=True, text=True, env=env, cwd=package,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "my_method" in listed.stdout

    small = ["data.train_size=96", "data.val_size=40", "data.test_size=40", "train.epochs=1",
             "train.max_steps_per_epoch=2", "train.batch_size=32", "train.log_every=1", f"output_dir={tmp_path / 'runs'}"]
    trained = subprocess.run([ZOO, "train", "my_method_shapes.yaml", "--quiet",
                              *(arg for s in small for arg in ("--set", s))],
                             capture_output=True, text=True, env=env, cwd=package, timeout=600)
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "my_method_shapes"
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["method"]["type"] == "my_method"
    assert config["method"]["image_head"]["type"] == "mean_head"
    assert config["plugin"]["name"] == "my_method"
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in steps if x["kind"] == "step"] == [1, 2]
