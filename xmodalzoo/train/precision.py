"""Mixed precision: the autocast dtype and the gradient scaler of a ``train.precision`` setting."""
from __future__ import annotations

import warnings
from typing import Any

import torch


def mixed_precision(precision: str, device: torch.device, console: Any) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """``(autocast dtype or None, grad scaler)`` for ``precision`` (``fp32``, ``bf16``, ``fp16``) on
    ``device``; mixed precision needs CUDA: elsewhere it says so on ``console`` and trains in fp32.
    The scaler is enabled for fp16 only."""
    amp = precision != "fp32" and device.type == "cuda"
    if precision != "fp32" and not amp:
        console.print(f"[yellow]precision {precision} needs CUDA; training in fp32 on {device}")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if amp else None
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)


def step_scheduler(scheduler: Any) -> None:
    """``scheduler.step()`` after an optimizer step, without torch's warning that the optimizer has
    not stepped: with fp16 the gradient scaler skips the steps whose gradients overflow (the first
    ones, while it finds its scale), and the schedule still counts them, as the trainer's step does."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        scheduler.step()
