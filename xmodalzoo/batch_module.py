"""The base class of training-only batch modules (e.g. HREM's instance-level relation graph).

A batch module sees the embeddings of a whole training batch and returns extra tensors for the loss
(``LossContext.extras``).  It has parameters of its own, which the optimizer trains and checkpoints
hold, but it is never used to encode an item: model folders leave it out and inference does not
need it.
"""
from __future__ import annotations

from typing import Any

from torch import nn


class BatchModule(nn.Module):
    """Training-only module: ``forward(image_emb, text_emb, batch) -> dict`` of extras for the loss.

    ``warmup_steps``: optimizer steps before the module is switched on.  The trainer calls
    :meth:`set_step` before every training step; while :attr:`active` is False, ``Method.forward``
    does not call the module and the loss receives empty extras.
    """

    def __init__(self, warmup_steps: int = 0) -> None:
        super().__init__()
        self.warmup_steps = int(warmup_steps)
        self.active = self.warmup_steps <= 0

    def set_step(self, step: int) -> None:
        """Switch the module on once ``step`` (optimizer steps done) reaches ``warmup_steps``."""
        self.active = step >= self.warmup_steps

    def forward(self, image: Any, text: Any, batch: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
