"""zoo.Index: build from an image folder, reopen in a fresh process, resume, unreadable images, model checks,
and the `zoo index build` / `zoo search` commands through the real console script."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import xmodalzoo as zoo
from xmodalzoo.errors import ModelMismatchError, SearchIndexError
from xmodalzoo.hub import save_model
from tiny import write_recipe

NUM_IMAGES = 9


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny untrained VSE model folder, a folder of generated images (one unreadable), some captions."""
    tmp = tmp_path_factory.mktemp("search")
    os.environ.setdefault("XMODALZOO_CACHE", str(tmp / "cache"))
    recipe = zoo.load_recipe(write_recipe(tmp))
    data = zoo.build_component("dataset", recipe.data, split="test")
    torch.manual_seed(0)
    method = zoo.build_method(recipe, train_captions=list(data.captions)).eval()
    save_model(method, tmp / "model")
    images = tmp / "photos"
    (images / "album").mkdir(parents=True)
    for i in range(NUM_IMAGES):
        folder = images / "album" if i % 2 else images
        data.load_image(i).save(folder / f"img{i}.png")
    (images / "broken.jpg").write_bytes(b"this is not a jpeg")
    (images / "notes.txt").write_text("not an image")
    return tmp, images, list(data.captions[:3])


def hits_json(results):
    return [[[str(h.path), h.score] for h in hits] for hits in results]


def test_round_trip_fresh_process_identical(setup, tmp_path):
    tmp, images, captions = setup
    index = zoo.Index.build(images, tmp / "model", tmp_path / "idx", batch_size=4, shard_size=3, progress=False)
    assert len(index) == NUM_IMAGES and index.similarity == "cosine" and index.exact
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["model"]["reference"] == str((tmp / "model").resolve())
    assert {"config_sha256", "weights_sha256", "tokenizer_sha256"} <= set(meta["model"])
    assert meta["embedding"] == "point" and not (tmp_path / "idx" / "shards").exists()
    here = hits_json(index.search(captions, k=4))
    # brute force through the engine on the stored embeddings
    scores, ids = index.search_embeddings(index.model.embed_texts(captions), 4, brute_force=True)
    assert [[str(index.paths[i]) for i in row] for row in ids.tolist()] == [[p for p, _ in r] for r in here]
    code = ("import json, sys, xmodalzoo as zoo; ix = zoo.Index.open(sys.argv[1]); "
            "print(json.dumps([[[str(h.path), h.score] for h in r] for r in ix.search(json.loads(sys.argv[2]), k=4)]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx"), json.dumps(captions)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here
    by_image = index.search_images([images / "img4.png"], k=2)[0]
    assert by_image[0].path == images / "img4.png" and by_image[0].score == pytest.approx(1.0, abs=1e-5)


def test_unreadable_images_reported(setup, tmp_path, capsys):
    tmp, images, _ = setup
    index = zoo.Index.build(images, tmp / "model", tmp_path / "idx", shard_size=4)
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "unreadable.tsv" in err
    lines = (tmp_path / "idx" / "unreadable.tsv").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("broken.jpg\t")
    assert index.report.unreadable[0][0] == "broken.jpg"
    assert all(p.suffix == ".png" for p in index.paths)
    # a rerun finds it up to date
    again = zoo.Index.build(images, tmp / "model", tmp_path / "idx", progress=False)
    assert again.report.up_to_date and again.report.encoded == 0


def test_resume_after_interruption(setup, tmp_path, monkeypatch):
    tmp, images, captions = setup
    method = zoo.load(tmp / "model")
    real = method.encode_image
    calls = {"n": 0}

    def crashing(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(method, "encode_image", crashing)
    with pytest.raises(KeyboardInterrupt):
        zoo.Index.build(images, method, tmp_path / "idx", batch_size=2, shard_size=2, progress=False)
    shards = sorted((tmp_path / "idx" / "shards").glob("*.safetensors"))
    assert len(shards) == 2 and not (tmp_path / "idx" / "index.json").exists()
    with pytest.raises(SearchIndexError, match="unfinished build"):
        zoo.Index.open(tmp_path / "idx", model=method)
    counted = {"images": 0}

    def counting(x):
        counted["images"] += len(x)
        return real(x)

    monkeypatch.setattr(method, "encode_image", counting)
    index = zoo.Index.build(images, method, tmp_path / "idx", batch_size=2, shard_size=2, progress=False)
    assert index.report.reused == 4 and index.report.encoded == NUM_IMAGES - 4
    assert counted["images"] == NUM_IMAGES - 4  # the first two shards were not encoded again
    fresh = zoo.Index.build(images, tmp / "model", tmp_path / "fresh", batch_size=2, progress=False)
    assert torch.equal(index.embeddings.vectors, fresh.embeddings.vectors)
    assert index.paths == fresh.paths


def test_changed_model_refused(setup, tmp_path):
    tmp, images, _ = setup
    zoo.Index.build(images, tmp / "model", tmp_path / "idx", progress=False)
    other = zoo.load(tmp / "model")
    with torch.no_grad():
        next(other.image_head.parameters()).add_(1e-3)
    with pytest.raises(ModelMismatchError, match="weights differ"):
        zoo.Index.open(tmp_path / "idx", model=other)
    # the recorded folder itself retrained (overwritten) later: refused too
    shutil.copytree(tmp / "model", tmp_path / "model")
    zoo.Index.build(images, tmp_path / "model", tmp_path / "idx2", progress=False)
    save_model(other, tmp_path / "model")
    with pytest.raises(ModelMismatchError):
        zoo.Index.open(tmp_path / "idx2")
    # a model built without a reference must be passed again
    zoo.Index.build(images, zoo.load(tmp / "model"), tmp_path / "idx3", progress=False)
    with pytest.raises(SearchIndexError, match="records no model reference"):
        zoo.Index.open(tmp_path / "idx3")
    assert len(zoo.Index.open(tmp_path / "idx3", model=tmp / "model")) == NUM_IMAGES


def zoo_cli(*args, cwd=None):
    exe = Path(sys.executable).with_name("zoo")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def cli_index(setup, tmp_path_factory):
    """An index built by ``zoo index build`` (shards of 4 images)."""
    tmp, images, _ = setup
    out = tmp_path_factory.mktemp("cli") / "idx"
    built = zoo_cli("index", "build", images, "--model", tmp / "model", "-o", out, "--shard-size", "4")
    assert built.returncode == 0, built.stderr
    assert "indexing: 4/10 images" in built.stderr and "skipped 1 unreadable" in built.stderr
    return out


@pytest.mark.slow
def test_cli_build_and_search(setup, cli_index, tmp_path):
    tmp, images, captions = setup
    found = zoo_cli("search", cli_index, captions[0], "-k", "3", "--html", tmp_path / "g.html",
                    "--png", tmp_path / "g.png")
    assert found.returncode == 0, found.stderr
    rows = [line.split() for line in found.stdout.splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    expected = zoo.Index.open(cli_index).search(captions[0], k=3)[0]
    assert [(float(r[1]), r[2]) for r in rows] == [(pytest.approx(h.score, abs=1e-4), str(h.path)) for h in expected]
    assert (tmp_path / "g.png").stat().st_size > 0 and "<img" in (tmp_path / "g.html").read_text()
    by_image = zoo_cli("search", cli_index, "--image", images / "img2.png", "-k", "1")
    assert by_image.returncode == 0 and by_image.stdout.split()[2] == str(images / "img2.png")


@pytest.mark.slow
def test_cli_errors_are_one_line_exit_2(setup, cli_index, tmp_path):
    tmp, images, captions = setup
    missing = zoo_cli("search", tmp_path / "nowhere", "a dog")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such index folder" in missing.stderr
    bad = zoo_cli("search", cli_index, "--image", images / "broken.jpg")
    assert bad.returncode == 2 and "broken.jpg: unreadable image" in bad.stderr and bad.stderr.count("\n") == 1
    shutil.copytree(tmp / "model", tmp_path / "other")
    other = zoo.load(tmp_path / "other")
    with torch.no_grad():
        next(other.text_head.parameters()).mul_(2.0)
    save_model(other, tmp_path / "other")
    mismatch = zoo_cli("search", cli_index, "a red circle", "--model", tmp_path / "other")
    assert mismatch.returncode == 2 and "weights differ" in mismatch.stderr and mismatch.stderr.count("\n") == 1


@pytest.mark.parametrize("recipe", ["pvse_shapes", "pcme_shapes", "dive_shapes"])
def test_set_and_gaussian_models_index_like_brute_force(recipe, tmp_path, monkeypatch):
    """Untrained models of shipped recipes (sets: PVSE mil_max, DivE smooth_chamfer; Gaussians: PCME
    match_prob): an exact kind's index search equals brute force through the engine; an approximate
    one returns the similarity's own scores, never above brute force's best."""
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[1] / "recipes"
    overrides = ["data.train_size=16", "data.val_size=8", "data.test_size=24"]
    cfg = zoo.load_recipe(root / f"{recipe}.yaml", overrides)
    data = zoo.build_component("dataset", cfg.data, split="test")
    torch.manual_seed(0)
    method = zoo.build_method(cfg, train_captions=list(data.captions)).eval()
    for i in range(24):
        data.load_image(i).save(tmp_path / f"{i:02d}.png")
    index = zoo.Index.build(tmp_path, method, tmp_path / "idx", progress=False)
    query = method.embed_texts(list(data.captions[:5]))
    want_s, want_i = index.search_embeddings(query, 3, brute_force=True)
    got_s, got_i = index.search_embeddings(query, 3, candidates=8)  # fewer candidates than images
    if index.exact:
        assert torch.equal(got_i, want_i)
        torch.testing.assert_close(got_s, want_s, rtol=1e-5, atol=1e-5)
    else:  # smooth-Chamfer, match probability
        from xmodalzoo.similarity.engine import similarity_matrix

        full = similarity_matrix(method.similarity, query, index.embeddings, device="cpu")
        torch.testing.assert_close(got_s, full.gather(1, got_i), rtol=1e-5, atol=1e-6)
        assert (got_s <= want_s[:, :1] + 1e-6).all()
