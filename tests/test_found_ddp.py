"""DDP helpers without processes: duplicate image rows of a gathered batch, and train.sync_batchnorm."""
from __future__ import annotations

import pytest
import torch

from tiny import write_recipe
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.recipe import load_recipe
from xmodalzoo.train import distributed as D
from xmodalzoo.train.trainer import Trainer, TrainingError


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
