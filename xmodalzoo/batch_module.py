"""The base class of training-only batch modules (e.g. HREM's instance-level relation graph).

A batch module sees the embeddings of a whole training batch and returns extra tensors for the loss
(``LossContext.extras``).  It has parameters of its own, which the optimizer trains and checkpoints
hold, but it is never used to encode an item: model folders leave it out and inference does not
need it.  Register one as kind ``batch_module``; a method config names it in its ``batch_module``
field and :func:`xmodalzoo.method.assemble_method` builds it as
``factory(cfg, *, embed_dim, image_encoder, text_encoder)``.
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


def set_batch_module_step(module: nn.Module | None, step: int) -> None:
    """Tell a method's batch module how many optimizer steps are done (the trainer calls this).

    A :class:`BatchModule` switches itself on in :meth:`BatchModule.set_step`.  A plain module with a
    ``warmup_steps`` attribute (how batch modules worked before this base class) is switched the same
    way through its ``active`` attribute; any other module is always on.
    """
    if isinstance(module, BatchModule):
        module.set_step(step)
    elif module is not None and hasattr(module, "warmup_steps"):
        module.active = step >= module.warmup_steps


def is_active(module: nn.Module | None) -> bool:
    """Whether ``Method.forward`` calls ``module`` for this batch (a module without ``active`` always is)."""
    return module is not None and bool(getattr(module, "active", True))
