"""Issue 11, item 9 (these parts): a relative ``data.root`` resolves against the recipe's folder (as
``extends:`` does), and ``pretrained: true`` without network fails at once naming the setting."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny import TINY, write_recipe
from xmodalzoo.errors import PretrainedWeightsError
from xmodalzoo.recipe import load_recipe

ZOO = [str(Path(sys.executable).with_name("zoo"))]


def jsonl_recipe(folder: Path, root: str, name: str = "r", extends: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"data": {"type": "jsonl", "root": root}}
    if extends:
        data["extends"] = extends
    else:
        data["method"] = TINY["method"]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_relative_data_root_resolves_against_the_recipes_folder(tmp_path, monkeypatch):
    (tmp_path / "project" / "data" / "flickr").mkdir(parents=True)
    recipe = jsonl_recipe(tmp_path / "project" / "recipes", "../data/flickr")
    monkeypatch.chdir(tmp_path)  # anywhere but the recipe's folder
    assert load_recipe(recipe).data.root == str(tmp_path / "project" / "data" / "flickr")
    # written in a base file: against the base's folder, like its own extends:
    child = jsonl_recipe(tmp_path / "elsewhere", "unused", name="child", extends=str(recipe))
    child.write_text(yaml.safe_dump({"extends": str(recipe)}))
    assert load_recipe(child).data.root == str(tmp_path / "project" / "data" / "flickr")
    # absolute, ~ and $VAR roots are left as written; --set is a shell path, relative to the cwd
    for root in (str(tmp_path / "abs"), "~/data", "$XMODALZOO_DATA_ROOT/flickr"):
        assert load_recipe(jsonl_recipe(tmp_path / "p2", root)).data.root == root
    assert load_recipe(recipe, ["data.root=local/here"]).data.root == "local/here"


def test_a_root_that_exists_only_from_the_cwd_still_works_with_a_warning(tmp_path, monkeypatch):
    (tmp_path / "legacy").mkdir()
    recipe = jsonl_recipe(tmp_path / "recipes", "legacy")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(FutureWarning, match=r"data\.root 'legacy' resolves against the recipe's folder"):
        assert load_recipe(recipe).data.root == str(tmp_path / "legacy")


def test_pretrained_weights_come_from_the_cache_without_touching_the_network(monkeypatch):
    from huggingface_hub import constants

    from xmodalzoo.encoders.pretrained import with_pretrained_weights

    seen = []

    def cached() -> str:
        seen.append(constants.HF_HUB_OFFLINE)
        return "weights"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert with_pretrained_weights(cached, "method.image_encoder.pretrained", "w") == "weights"
    assert seen == [True] and constants.HF_HUB_OFFLINE is False  # built offline, the flag restored


def test_pretrained_weights_download_when_the_hub_answers(hub_server, monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from xmodalzoo.encoders.pretrained import with_pretrained_weights

    def download() -> str:
        if constants.HF_HUB_OFFLINE:
            raise LocalEntryNotFoundError("not cached")
        return "downloaded"

    assert with_pretrained_weights(download, "method.image_encoder.pretrained", "w") == "downloaded"


def test_pretrained_weights_unreachable_hub_is_one_line_naming_the_setting(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from xmodalzoo.encoders.pretrained import with_pretrained_weights

    tries = []

    def download() -> str:
        tries.append(constants.HF_HUB_OFFLINE)
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(PretrainedWeightsError) as err:
        with_pretrained_weights(download, "method.image_encoder.pretrained", "the timm weights of resnet18")
    assert tries == [True]  # no online try (and so no retries) when the Hub cannot be reached
    line = str(err.value)
    assert len(line.splitlines()) == 1
    assert line.startswith("method.image_encoder.pretrained: the timm weights of resnet18 are not in the local cache")
    assert "http://127.0.0.1:9 cannot be reached" in line and "method.image_encoder.pretrained=false" in line


def test_zoo_train_with_pretrained_and_no_network_names_the_setting(tmp_path):
    recipe = write_recipe(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="300", HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"),
               HF_ENDPOINT="http://127.0.0.1:9", XMODALZOO_CACHE=str(tmp_path / "cache"))  # port 9: nothing listens
    out = subprocess.run(ZOO + ["train", str(recipe), "--quiet", "--set", "method.image_encoder.model=resnet18",
                                "--set", "method.image_encoder.pretrained=true"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.strip()]
    assert line.startswith("error: method.image_encoder.pretrained: the timm weights of resnet18 are not in the local")
    assert "http://127.0.0.1:9 cannot be reached" in line
    assert not (tmp_path / "runs").exists()
