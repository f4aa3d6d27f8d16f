"""The shared trainer on a tiny recipe: learning, resume equivalence, non-finite losses, run records."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tiny import write_recipe
from xmodalzoo.eval.evaluate import evaluate
from xmodalzoo.api import build_component as build
from xmodalzoo.recipe import load_recipe
from xmodalzoo.errors import TrainingError
from xmodalzoo.train.trainer import Trainer


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODALZOO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(2)


def test_training_lowers_loss_and_raises_recall(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, train={"epochs": 4}))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.setup()
    before = evaluate(trainer.method, build("dataset", recipe.data, split="test"), recipe.eval, progress=False)
    results = trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x["loss"] for x in lines if x["kind"] == "step"]
    epochs = [x for x in lines if x["kind"] == "epoch"]
    assert len(epochs) == 4
    # hardest-negative losses (after the 1-epoch warm-up) fall
    assert epochs[-1]["loss"] < epochs[1]["loss"]
    assert results["full"]["rsum"] > before["full"]["rsum"] + 10
    run = tmp_path / "run"
    for name in ("recipe.resolved.yaml", "environment.json", "eval_results.json", "model/config.json",
                 "model/model.safetensors", "checkpoints/last/weights.safetensors", "checkpoints/best/weights.safetensors"):
        assert (run / name).exists(), name
    env = json.loads((run / "environment.json").read_text())
    assert env["seed"] == 0
    assert steps[0] > 0


def test_resume_gives_the_same_result(tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path))
    Trainer(recipe, tmp_path / "straight", progress=False).fit()

    real_save = Trainer.save_last

    def save_then_crash(self):
        real_save(self)
        if self.epoch == 0:
            raise KeyboardInterrupt("simulated crash after the first epoch's checkpoint")

    monkeypatch.setattr(Trainer, "save_last", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        Trainer(recipe, tmp_path / "resumed", progress=False).fit()
    monkeypatch.setattr(Trainer, "save_last", real_save)
    assert not (tmp_path / "resumed" / "DONE").exists()
    Trainer(recipe, tmp_path / "resumed", resume=True, progress=False).fit()

    a = load_file(str(tmp_path / "straight" / "checkpoints/last/weights.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints/last/weights.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads((tmp_path / "straight" / "eval_results.json").read_text())
    rb = json.loads((tmp_path / "resumed" / "eval_results.json").read_text())
    assert ra["full"] == rb["full"]


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    real_step = Trainer.train_step

    def poisoned(self, batch):
        if self.epoch == 1 and self.step >= 4:
            self.method.image_head.proj.weight.data.fill_(float("nan")) if hasattr(
                self.method.image_head, "proj") else next(self.method.image_head.parameters()).data.fill_(float("nan"))
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "non-finite loss" in msg and "step 5 (epoch 2)" in msg and "checkpoints/last" in msg
    meta = json.loads((tmp_path / "run" / "checkpoints/last/meta.json").read_text())
    assert meta["epoch"] == 1  # the good checkpoint of epoch 1 is kept (meta.json counts from 1)


def test_bad_param_group_pattern_is_reported(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, train={"param_groups": [{"pattern": "image_encodr.*", "lr_mult": 0.1}]}))
    with pytest.raises(ValueError, match="matches no parameter"):
        Trainer(recipe, tmp_path / "run", progress=False).setup()


def test_freeze_and_lr_multipliers(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, train={
        "epochs": 2, "max_steps_per_epoch": 1,
        "param_groups": [{"pattern": "image_encoder.backbone.*", "lr_mult": 0.1}],
        "freeze": [{"pattern": "text_encoder.embed", "epochs": 1}],
        "scheduler": {"name": "constant"},
    }))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.setup()
    groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert groups["image_encoder.backbone.*"] == pytest.approx(0.1 * groups["default"])
    embed0 = trainer.method.text_encoder.embed.weight.detach().clone()
    trainer.epoch = 0
    trainer.train_epoch()
    assert torch.equal(embed0, trainer.method.text_encoder.embed.weight)  # frozen in epoch 1
    trainer.epoch = 1
    trainer.train_epoch()
    assert not torch.equal(embed0, trainer.method.text_encoder.embed.weight)  # trained in epoch 2


def test_begin_epoch_applies_the_epochs_freeze_rules_and_batches(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, train={"freeze": [{"pattern": "text_encoder.embed", "epochs": 1}]}))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.setup()
    embed = trainer.method.text_encoder.embed.weight
    trainer.method.eval()
    trainer.epoch = 0
    assert trainer.begin_epoch() == ["text_encoder.embed.weight"]
    assert not embed.requires_grad and trainer.method.training and trainer.loss.training
    first = [b.caption_index.tolist() for b in trainer.loader]
    trainer.epoch = 1
    assert trainer.begin_epoch() == [] and embed.requires_grad
    second = [b.caption_index.tolist() for b in trainer.loader]
    trainer.epoch = 0
    trainer.begin_epoch()
    assert [b.caption_index.tolist() for b in trainer.loader] == first != second


def test_scheduler_steps_quietly_after_a_skipped_optimizer_step():
    """fp16's gradient scaler skips the optimizer steps whose gradients overflow; the schedule still
    counts them, without torch's warning (which it gives when the optimizer has not stepped)."""
    import warnings

    from xmodalzoo.train.precision import step_scheduler

    def setup():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)

    opt, sched = setup()
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        sched.step()  # the optimizer never stepped: torch warns
    assert any("lr_scheduler.step()" in str(w.message) for w in plain)
    opt, sched = setup()
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        step_scheduler(sched)
    assert not quiet and opt.param_groups[0]["lr"] == 0.5  # stepped, silently
