"""Files written atomically (xmodalzoo/files.py) get the permissions an ordinary write gets under the
umask: model folders, checkpoints, results files, the shapes cache; not tempfile's owner-only 0600/0700."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from tiny import write_recipe
from xmodalzoo.api import build_method
from xmodalzoo.embeddings import Embedding, PointEmbedding
from xmodalzoo.eval.report import write_results
from xmodalzoo.files import atomic_open, current_umask, write_json_atomic
from xmodalzoo.hub.folder import save_model
from xmodalzoo.recipe import load_recipe
from xmodalzoo.train.checkpoint import save_checkpoint


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by path relative to ``root``."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return out


def expected(path: Path, mask: int) -> int:
    return (0o777 if path.is_dir() else 0o666) & ~mask


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_single_files_get_the_ordinary_mode(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary write gives, as a reference
    write_results({"full": {"rsum": 1.0}}, tmp_path / "run" / "eval_results.json")
    write_json_atomic(tmp_path / "record.json", {"a": 1})
    with atomic_open(tmp_path / "cache.npz", "wb") as f:
        f.write(b"\0")
    for name in ("run/eval_results.json", "record.json", "cache.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) \
            == 0o666 & ~umask, name


def test_model_folders_and_checkpoints_get_the_ordinary_modes(tmp_path, umask, monkeypatch):
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    method = build_method(load_recipe(write_recipe(tmp_path)), train_captions=["a red circle", "a blue star"])
    save_model(method, tmp_path / "model")
    save_checkpoint(tmp_path / "checkpoints" / "last", {"method": method}, {"epoch": 0}, {"epoch": 1})
    save_checkpoint(tmp_path / "checkpoints" / "last", {"method": method}, {"epoch": 1}, {"epoch": 2},
                    reuse_weights=True)  # the replacing swap, with the hard-linked weights
    for folder in ("model", "checkpoints"):
        found = modes(tmp_path / folder)
        assert len(found) > 3, found
        want = {name: expected(tmp_path / folder / name, umask) for name in found}
        assert {k: oct(v) for k, v in found.items()} == {k: oct(v) for k, v in want.items()}
    assert torch.load(tmp_path / "checkpoints" / "last" / "train_state.pt", weights_only=False)["epoch"] == 1


def test_saved_embeddings_get_the_ordinary_mode(tmp_path, umask):
    PointEmbedding(torch.ones(2, 3)).save(tmp_path / "emb.safetensors")
    assert stat.S_IMODE((tmp_path / "emb.safetensors").stat().st_mode) == 0o666 & ~umask
    assert torch.equal(Embedding.load(tmp_path / "emb.safetensors").tensors()["vectors"], torch.ones(2, 3))
