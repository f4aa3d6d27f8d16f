"""The zoo's model folders, pretrained index, zoo.load sources, export/push/download, against the
test Hub (tests/hubserver.py): checksums, offline use, retries and failures, no pickle ever read."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import xmodalzoo as zoo
from tiny import write_recipe
from xmodalzoo.errors import HubError, ModelFolderError
from xmodalzoo.hub.folder import CONFIG, FORMAT, FORMAT_V1, WEIGHTS, load_model

ZOO = str(Path(sys.executable).with_name("zoo"))
REPO = "zoo-tester/tiny-vse"
#: embeds the first 6 test images and 4 captions of the tiny recipe with zoo.load(SOURCE) and writes
#: the embeddings and the caption x image scores to OUT (a safetensors file)
PROBE = """
import sys, xmodalzoo as zoo
from safetensors.torch import save_file
source, recipe, out = sys.argv[1:4]
model = zoo.load(source)
data = zoo.build_component("dataset", zoo.load_recipe(recipe).data, split="test")
img = model.embed_images([data.load_image(i) for i in range(6)])
txt = model.embed_texts(list(data.captions[:4]))
save_file({"img": img.vectors, "txt": txt.vectors, "scores": model.score(txt, img)}, out)
"""


def probe(model, recipe: Path) -> dict[str, torch.Tensor]:
    """What PROBE writes, computed in this process."""
    data = zoo.build_component("dataset", zoo.load_recipe(recipe).data, split="test")
    img = model.embed_images([data.load_image(i) for i in range(6)])
    txt = model.embed_texts(list(data.captions[:4]))
    return {"img": img.vectors, "txt": txt.vectors, "scores": model.score(txt, img)}


def run_probe(source: str, recipe: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, source, str(recipe), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)


def zoo_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ZOO, *args], env=env or dict(os.environ, COLUMNS="200"), cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """(model folder of the tiny recipe's method, with weights moved off their init, recipe path)."""
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    recipe = write_recipe(tmp_path)
    data = zoo.build_component("dataset", zoo.load_recipe(recipe).data, split="test")
    torch.manual_seed(0)
    method = zoo.build_method(zoo.load_recipe(recipe), train_captions=list(data.captions)).eval()
    with torch.no_grad():
        next(method.image_head.parameters()).add_(0.5)
    results = {"full": {"i2t_r1": 12.5, "t2i_r1": 10.0, "rsum": 150.0}, "meta": {"split": "test"}}
    folder = zoo.save_pretrained(method, tmp_path / "model", name="tiny-vse", recipe=recipe.read_text(),
                                 results=results, datasets=["shapes"], license="mit")
    return folder, recipe


# ------------------------------------------------------------------------------------ model folder


def test_model_folder_records_format_versions_preprocessing_shapes_and_checksums(tiny):
    from huggingface_hub import ModelCard

    folder, recipe = tiny
    config = json.loads((folder / CONFIG).read_text())
    assert config["format"] == FORMAT and config["library_name"] == "xmodalzoo"
    assert config["distributions"]["xmodalzoo"] == zoo.__version__ and "xmodalzoo-vse" in config["distributions"]
    assert config["method"]["type"] == "vse" and "loss" not in config["method"]
    assert config["preprocessing"]["image"]["image_size"] == 32
    assert any("Normalize" in s for s in config["preprocessing"]["image"]["eval_steps"])
    assert config["preprocessing"]["tokenizer"]["type"]
    assert config["embedding"]["image"] == {"kind": "point", "shape": {"vectors": [32]}}
    assert config["embedding"]["text"] == {"kind": "point", "shape": {"vectors": [32]}}
    weights = (folder / WEIGHTS).read_bytes()
    assert config["files"][WEIGHTS] == {"sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights)}
    assert (folder / "recipe.yaml").read_text() == recipe.read_text()
    assert json.loads((folder / "eval_results.json").read_text())["full"]["rsum"] == 150.0
    assert (folder / "tokenizer").is_dir()
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "xmodalzoo" and card.data.license == "mit" and card.data.datasets == ["shapes"]
    assert "vse" in card.data.tags
    evals = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert evals == {("full", "i2t_r1"): 12.5, ("full", "t2i_r1"): 10.0, ("full", "rsum"): 150.0}
    assert "zoo.load(" in card.text and "@inproceedings{faghri2018vse++" in card.text


def test_tampered_weights_fail_their_checksum_before_they_are_read(tiny, monkeypatch):
    folder, _ = tiny
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    (folder / WEIGHTS).write_bytes(bytes(data))

    def never(*a, **k):
        raise AssertionError("the weights were read before their checksum was checked")

    monkeypatch.setattr("safetensors.torch.load_file", never)
    with pytest.raises(ModelFolderError, match=r"model\.safetensors: sha256 [0-9a-f]{64} does not match") as err:
        zoo.load(folder)
    assert "\n" not in str(err.value)


def test_format_1_folders_still_load(tiny):
    folder, _ = tiny
    expected = load_model(folder).state_dict()
    config = json.loads((folder / CONFIG).read_text())
    old = {"format": FORMAT_V1, "xmodalzoo_version": "0.0.1", "plugin": config["plugin"],
           "method": {**config["method"], "loss": {"type": "triplet"}}}
    (folder / CONFIG).write_text(json.dumps(old))
    loaded = zoo.load(folder).state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_unknown_method_names_the_distribution_to_install(tiny):
    folder, _ = tiny
    config = json.loads((folder / CONFIG).read_text())
    config["method"]["type"] = "nosuch"
    config["plugin"] = {"name": "nosuch", "distribution": "xmodalzoo-nosuch"}
    config["distributions"]["xmodalzoo-nosuch"] = "0.3.0"
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"method 'nosuch' is not registered: install the plugin "
                                               r"distribution xmodalzoo-nosuch \(version 0.3.0 wrote it\)"):
        zoo.load(folder)


def test_weights_load_strictly_listing_missing_and_unexpected_keys(tiny):
    from xmodalzoo.hub.integrity import file_record

    folder, _ = tiny
    state = load_file(str(folder / WEIGHTS))
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(folder / WEIGHTS))
    config = json.loads((folder / CONFIG).read_text())
    config["files"][WEIGHTS] = file_record(folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFolderError) as err:
        zoo.load(folder)
    assert f"1 missing key: {dropped}" in str(err.value) and "1 unexpected key: extra.weight" in str(err.value)


def test_a_run_folder_loads_its_model(tiny, tmp_path):
    folder, _ = tiny
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    folder.rename(run / "model")
    model = zoo.load(run)
    assert not model.training and model.tokenizer is not None and callable(model.image_transform())
    with pytest.raises(ModelFolderError, match="neither a model folder"):
        zoo.load(tmp_path / "runs")


# ------------------------------------------------------------------------------------ pretrained index


def test_unpublished_entries_are_listed_as_such_and_loading_says_how_to_make_them():
    [entry] = zoo.list_pretrained("dive*")
    assert entry.name == "dive-coco" and not entry.available and entry.source == "unpublished"
    info = zoo.pretrained_info("dive-coco")
    assert info["available"] is False and info["cached"] is None and info["recipe"] == "recipes/dive_coco.yaml"
    assert {(m["protocol"], m["measured_by"]) for m in info["metrics"]} == {("coco1k", "paper"), ("coco5k", "paper")}
    with pytest.raises(HubError) as err:
        zoo.load("dive-coco")
    msg = str(err.value)
    assert "no published weights" in msg and "zoo train recipes/dive_coco.yaml" in msg and "zoo push" in msg
    assert "\n" not in msg


def test_plugins_declare_entries_as_checked_plain_data(bare_registry):
    from xmodalzoo.errors import RegistryError
    from xmodalzoo.registry import Registrar

    r = Registrar("p", "dist-p")
    with pytest.raises(RegistryError, match="needs url= and sha256="):
        r.add_pretrained("a", method="vse", source="official-url", url="https://example.org/a.pth")
    with pytest.raises(RegistryError, match="needs recipe="):
        r.add_pretrained("b", method="vse", source="unpublished")
    with pytest.raises(RegistryError, match="source 'zip'"):
        r.add_pretrained("c", repo_id="o/c", method="vse", source="zip")
    r.add_pretrained("d", repo_id="o/d", method="vse", revision="abc123", license="mit",
                     metrics=[{"dataset": "coco", "protocol": "coco5k", "metric": "rsum", "value": 400.0}])
    assert r.staged_pretrained[0].location == "o/d@abc123" and r.staged_pretrained[0].metrics[0].value == 400.0


def test_official_url_entries_go_through_the_converter_hook(monkeypatch, tmp_path, tiny):
    import types

    from xmodalzoo.hub.load import resolve_entry
    from xmodalzoo.api import convert_official
    from xmodalzoo.registry import PretrainedEntry

    folder, _ = tiny
    calls = []
    hook = types.ModuleType("xmodalzoo.convert.official")
    hook.load_official = lambda entry, cache_dir, local_files_only: calls.append((entry.name, local_files_only)) or folder
    monkeypatch.setitem(sys.modules, "xmodalzoo.convert.official", hook)
    entry = PretrainedEntry("x-official", None, "vse", "p", source="official-url", url="https://e.org/x.pth",
                            sha256="0" * 64)
    with pytest.raises(HubError, match="converted from the authors' checkpoint"):
        resolve_entry(entry)  # the hub room alone has no converters
    assert resolve_entry(entry, local_files_only=True, official=convert_official) == folder
    assert calls == [("x-official", True)]


# ------------------------------------------------------------------------------------ the Hub


def test_push_then_load_from_the_hub_and_offline_from_the_cache(tiny, hub_server, tmp_path):
    folder, recipe = tiny
    (folder / "notes.pkl").write_bytes(b"not uploaded")  # only model folder files are published
    url = zoo.push_to_hub(folder, REPO, private=True)
    assert REPO in url
    from huggingface_hub import HfApi

    files = set(HfApi().list_repo_files(REPO))
    assert {CONFIG, WEIGHTS, "README.md", "recipe.yaml", "eval_results.json"} <= files and "notes.pkl" not in files
    expected = probe(load_model(folder), recipe)

    model = zoo.load(f"hf-hub:{REPO}")
    got = probe(model, recipe)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    cached = zoo.hub.resolve(f"hf-hub:{REPO}", local_files_only=True)
    assert "hf-hub:zoo-tester/tiny-vse" in (cached / "README.md").read_text()  # the card names the repo

    # a fresh process, offline: served from the cache with no request at all
    hub_server.clear_requests()
    out = tmp_path / "offline.safetensors"
    proc = run_probe(f"hf-hub:{REPO}", recipe, out, dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr
    assert hub_server.count() == 0
    offline = load_file(str(out))
    assert all(torch.equal(offline[k], expected[k]) for k in expected)


def test_uncached_offline_load_names_the_cache_and_zoo_download(hub_server, tmp_path):
    hub_server.add_repo(REPO, {CONFIG: b"{}"})
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="400")
    proc = zoo_cli("eval", f"hf-hub:{REPO}", env=env, cwd=tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.count("\n") == 0, err
    assert os.environ["HF_HUB_CACHE"] in err and f"zoo download hf-hub:{REPO}" in err
    assert hub_server.count() == 0


def _no_partial_files(cache: Path) -> None:
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]
    assert not leftovers, leftovers
    assert not list(cache.rglob(f"snapshots/*/{WEIGHTS}"))


def test_a_5xx_on_the_weights_is_reported_and_leaves_nothing_half_written(tiny, hub_server):
    folder, _ = tiny
    zoo.push_to_hub(folder, REPO)
    cache = Path(os.environ["HF_HUB_CACHE"])
    hub_server.fail(r"^/cdn-lfs/", status=500, method="GET", times=1)
    with pytest.raises(HubError, match=rf"downloading {REPO} failed: .*500"):
        zoo.load(f"hf-hub:{REPO}")
    _no_partial_files(cache)
    assert zoo.load(f"hf-hub:{REPO}") is not None  # the next try, with the server well again, works


def test_dropped_connections_are_retried_then_reported(tiny, hub_server):
    folder, recipe = tiny
    zoo.push_to_hub(folder, REPO)
    cache = Path(os.environ["HF_HUB_CACHE"])
    size = (folder / WEIGHTS).stat().st_size
    hub_server.drop(r"^/cdn-lfs/", after_bytes=size // 2, times=1)  # once: huggingface_hub retries, it works
    model = zoo.load(f"hf-hub:{REPO}")
    assert hub_server.count("GET", r"^/cdn-lfs/") == 2
    assert all(torch.equal(a, b) for a, b in zip(probe(model, recipe).values(), probe(load_model(folder), recipe).values()))
    for p in list(cache.glob("models--*")):
        import shutil

        shutil.rmtree(p)
    hub_server.drop(r"^/cdn-lfs/", after_bytes=size // 2, times=20)  # every try: reported after the retries
    with pytest.raises(HubError, match=rf"downloading {REPO} failed after retries"):
        zoo.load(f"hf-hub:{REPO}")
    _no_partial_files(cache)


def test_loading_never_fetches_or_unpickles_other_files(tiny, hub_server):
    folder, _ = tiny
    import pickle

    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    files["pytorch_model.bin"] = pickle.dumps({"w": 1})
    files["modeling.py"] = b"raise SystemExit('executed')\n"
    hub_server.add_repo(REPO, files)
    loaded = zoo.hub.resolve(f"hf-hub:{REPO}")
    assert not (loaded / "pytorch_model.bin").exists() and not (loaded / "modeling.py").exists()
    assert hub_server.count("GET", r"pytorch_model\.bin|modeling\.py") == 0
    assert hub_server.count("HEAD", r"pytorch_model\.bin|modeling\.py") == 0


def test_registered_hub_entry_is_pinned_downloaded_and_reported_cached(tiny, hub_server, restore_registry):
    from xmodalzoo.registry import REGISTRY, PretrainedEntry

    folder, _ = tiny
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    sha = hub_server.add_repo(REPO, files)
    hub_server.commit_files(REPO, {WEIGHTS: b"newer weights that do not load"})  # main moves on; the pin does not
    REGISTRY.ensure_loaded()
    REGISTRY.add_pretrained(PretrainedEntry("tiny-hub", REPO, "vse", "test", revision=sha))
    assert zoo.pretrained_info("tiny-hub")["cached"] is None
    assert zoo.load("tiny-hub") is not None
    assert zoo.pretrained_info("tiny-hub")["cached"].endswith(sha)


# ------------------------------------------------------------------------------------ CLI


def test_cli_info_and_download_of_an_unpublished_entry():
    info = zoo_cli("info", "dive-coco")
    assert info.returncode == 0, info.stderr
    for text in ("source: unpublished", "(not published)", "recipes/dive_coco.yaml", "coco1k", "524.6"):
        assert text in info.stdout
    down = zoo_cli("download", "dive-coco")
    assert down.returncode == 2 and "no published weights" in down.stderr and down.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_round_trip_train_export_push_load_in_a_fresh_process(tmp_path, hub_server, monkeypatch):
    """train a few steps -> zoo export -> zoo push -> zoo.load in a fresh process with an empty cache."""
    import shutil

    env = dict(os.environ, XMODALZOO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", COLUMNS="200")
    recipe = write_recipe(tmp_path, train={"epochs": 1, "batch_size": 32, "sampler": {"type": "random_images"},
                                           "optimizer": {"name": "adamw", "lr": 2.0e-3}, "log_every": 1})
    trained = zoo_cli("train", str(recipe), "--quiet", env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "tiny"
    exported = zoo_cli("export", str(run), "-o", str(tmp_path / "export"), env=env, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert json.loads((tmp_path / "export" / "eval_results.json").read_text())["full"] == \
        json.loads((run / "eval_results.json").read_text())["full"]
    pushed = zoo_cli("push", str(tmp_path / "export"), "--repo-id", REPO, "--private", env=env, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    assert hub_server.token not in pushed.stdout + pushed.stderr
    shutil.rmtree(os.environ["HF_HUB_CACHE"], ignore_errors=True)
    monkeypatch.setenv("XMODALZOO_CACHE", env["XMODALZOO_CACHE"])
    out = tmp_path / "fresh.safetensors"
    proc = run_probe(f"hf-hub:{REPO}", recipe, out, env)
    assert proc.returncode == 0, proc.stderr
    assert hub_server.count("GET", r"^/cdn-lfs/") >= 1
    torch.set_num_threads(1)  # as the fresh process (OMP_NUM_THREADS=1): bit-equal needs equal reduction orders
    fresh, expected = load_file(str(out)), probe(load_model(run / "model"), recipe)
    assert all(torch.equal(fresh[k], expected[k]) for k in expected)
