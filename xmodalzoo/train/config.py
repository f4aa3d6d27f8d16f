"""Training options of a recipe (the ``train:`` section)."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ..config import Component, ComponentConfig


class OptimizerConfig(ComponentConfig):
    """The optimizer and its base hyper-parameters."""

    name: Literal["adamw", "adam", "sgd", "adamp"] = Field("adamw", description="adamp needs the adamp package")
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0, description="SGD only")
    amsgrad: bool = Field(False, description="Adam/AdamW only")


class ParamGroupRule(ComponentConfig):
    """Parameters whose name matches ``pattern`` (glob, e.g. ``image_encoder.backbone.*``) get ``lr × lr_mult``."""

    pattern: str
    lr_mult: float = Field(1.0, ge=0)
    weight_decay: float | None = Field(None, ge=0, description="override of the optimizer's weight decay")


class FreezeRule(ComponentConfig):
    """Parameters whose name matches ``pattern`` stay frozen for the first ``epochs`` epochs."""

    pattern: str
    epochs: int = Field(ge=0)


class SchedulerConfig(ComponentConfig):
    """Learning-rate schedule (per step) with an optional linear warm-up."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup: float = Field(0, ge=0, description="warm-up length, in warmup_unit")
    warmup_unit: Literal["steps", "epochs"] = "steps"
    milestones: list[int] = Field(default_factory=list, description="step schedule: epochs where lr *= gamma")
    gamma: float = Field(0.1, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of the base lr")


class TrainConfig(ComponentConfig):
    """How to train: batches, optimisation, precision, checkpoints."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1, description="global batch size (captions per step, over all processes)")
    sampler: Component["sampler"] = {"type": "random_captions"}
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    param_groups: list[ParamGroupRule] = Field(default_factory=list)
    freeze: list[FreezeRule] = Field(default_factory=list)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    grad_clip: float | None = Field(2.0, gt=0, description="max global gradient norm; null disables")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="mixed precision on CUDA only")
    compile: bool = Field(False, description="torch.compile the method")
    sync_batchnorm: bool = Field(
        False, description="multi-GPU: BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only). "
                           "Off: statistics per process")
    threads: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = Field(
        "auto", description="intra-op threads of the trainer; auto = OMP_NUM_THREADS if set, else the cores "
                            "not busy with other processes nor given to the data workers (docs/training.md)")
    num_workers: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = Field(
        "auto", description="data-loader worker processes, single-threaded each; auto = 0 on a CPU with fewer "
                            "than 4 free cores, else free/4 (at most 4); on CUDA free - 1 (at most 8)")
    log_every_steps: int | None = Field(
        None, ge=1, description="without a terminal: a progress line every N optimizer steps (null: by time only)")
    log_every_seconds: float | None = Field(
        30.0, gt=0, description="without a terminal: a progress line at least every S seconds (null: by steps only)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap steps per epoch (quick runs)")
    log_every: int = Field(10, ge=1, description="steps between metric log lines")
    eval_every: int = Field(1, ge=1, description="epochs between validation runs")
    keep_previous_checkpoint: bool = Field(
        True, description="keep the checkpoint of the epoch before checkpoints/last as checkpoints/previous "
                          "(up to twice the checkpoint disk space): a damaged last checkpoint falls back to it")
