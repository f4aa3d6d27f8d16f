"""DDP helpers: duplicate image rows of a gathered batch, train.sync_batchnorm, the test split built on the
main process only and its error raised on every process (two gloo processes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny import write_recipe
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.recipe import load_recipe
from xmodalzoo.train import distributed as D
from xmodalzoo.errors import TrainingError
from xmodalzoo.train.trainer import Trainer


def test_first_copies_keeps_first_occurrence_in_order() -> None:
    index = torch.tensor([7, 3, 9, 3, 7, 5])  # rank 0 had [7, 3, 9], rank 1 [3, 7, 5]
    assert D.first_copies(index).tolist() == [0, 1, 2, 5]
    assert D.first_copies(torch.tensor([4, 2])).tolist() == [0, 1]


def test_deduplicated_rows_give_the_single_process_loss_and_gradient() -> None:
    """Loss over the gathered rows with the duplicate dropped equals the loss over distinct images, and
    the gradient reaches each image exactly once (through its kept copy)."""
    torch.manual_seed(0)
    images = torch.randn(4, 6, requires_grad=True)            # distinct images 10, 11, 12, 13
    caps = torch.randn(8, 6)
    cap_img = torch.tensor([10, 11, 11, 12, 13, 12, 10, 13])   # image id of each caption
    ids = torch.tensor([10, 11, 12, 13])

    def loss(img: torch.Tensor, img_ids: torch.Tensor) -> torch.Tensor:
        s = img @ caps.t()
        pos = img_ids[:, None] == cap_img[None, :]
        return (s.clamp(min=0) * (~pos) - s * pos).sum()

    single = loss(images, ids)
    g_single, = torch.autograd.grad(single, images)
    gathered_rows = torch.tensor([0, 1, 2, 1, 3])              # image 11 encoded by both ranks
    emb = PointEmbedding(images[gathered_rows], aux={"attention": torch.arange(5.0)})
    keep = D.first_copies(ids[gathered_rows])
    kept = D.select_rows(emb, keep)
    assert kept.aux["attention"].tolist() == [0.0, 1.0, 2.0, 4.0]
    multi = loss(kept.vectors, ids[gathered_rows][keep])
    g_multi, = torch.autograd.grad(multi, images)
    assert torch.allclose(multi, single) and torch.allclose(g_multi, g_single)
    duplicated = loss(emb.vectors, ids[gathered_rows])         # without dropping: a different loss
    assert not torch.allclose(duplicated, single)


def test_sync_batchnorm_option(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(write_recipe(tmp_path, train={"sync_batchnorm": True}))
    assert recipe.train.sync_batchnorm is True
    assert load_recipe(write_recipe(tmp_path, name="plain")).train.sync_batchnorm is False
    # a multi-process CPU run: torch's SyncBatchNorm needs CUDA, so it stops at start-up, clearly
    monkeypatch.setattr(D, "init_distributed", lambda device="auto": D.DistInfo(rank=0, world_size=2))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="sync_batchnorm needs CUDA.*per process"):
        trainer.setup()


RAISE_EVERYWHERE = """
import sys
import torch.distributed as dist
from xmodalzoo.train import distributed as D

class Unpicklable(ValueError):
    def __init__(self, a, b):  # unpickling calls Unpicklable(msg): fails
        super().__init__(f"{a} {b}")

rank, init_file = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
info = D.DistInfo(rank=rank, world_size=2)
for error in (None, ValueError("coco5k needs at least 5000 images"), Unpicklable("not", "picklable")):
    try:
        D.raise_everywhere(error if rank == 0 else None, info)
        print("ok")
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
dist.destroy_process_group()
"""


def test_raise_everywhere_raises_the_main_process_error_on_every_process(tmp_path: Path) -> None:
    script = tmp_path / "raise_everywhere.py"
    script.write_text(RAISE_EVERYWHERE)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "init")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    (main, err0), (other, err1) = (p.communicate(timeout=120) for p in procs)
    assert all(p.returncode == 0 for p in procs), err0 + err1
    assert main.splitlines() == ["ok", "ValueError: coco5k needs at least 5000 images", "Unpicklable: not picklable"]
    assert other.splitlines() == ["ok", "ValueError: coco5k needs at least 5000 images",
                                  "RuntimeError: Unpicklable: not picklable"]


def test_only_the_main_process_builds_the_test_split(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(write_recipe(tmp_path))
    built: list[int] = []

    class Stop(Exception):
        pass

    def stop(self):  # type: ignore[no-untyped-def]
        raise Stop

    monkeypatch.setattr(Trainer, "setup", stop)  # fit() checks the test split, then sets up: stop there
    for rank in (0, 1):
        monkeypatch.setattr(D, "init_distributed", lambda device="auto", r=rank: D.DistInfo(rank=r, world_size=2))
        trainer = Trainer(recipe, tmp_path / "run", progress=False)
        assert trainer.test_data is None
        monkeypatch.setattr(Trainer, "check_test_split", lambda self, r=rank: built.append(r) or "test split")
        with pytest.raises(Stop):
            trainer.fit()
        assert trainer.test_data == ("test split" if rank == 0 else None)
    assert built == [0]
