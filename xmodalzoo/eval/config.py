"""Evaluation options of a recipe (the ``eval:`` section)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import ComponentConfig

Protocol = Literal["full", "coco1k", "coco5k"]


class EvalConfig(ComponentConfig):
    """How to evaluate: protocols, batch sizes, the similarity engine's memory budget."""

    protocols: list[Protocol] = Field(
        default_factory=lambda: ["full"],
        description="full = the whole split; coco1k = mean over 5 folds of 1,000 images; coco5k = first 5,000 images",
    )
    batch_size: int = Field(256, ge=1, description="items per encoding batch")
    max_bytes: int = Field(1 << 30, ge=1024, description="working-memory budget of one similarity block")
    seed: int = Field(0, description="seed of any sampling at evaluation time")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    pmrp_zetas: list[int] = Field(default_factory=lambda: [0, 1, 2], description="Hamming margins for PMRP")
    num_workers: int = Field(0, ge=0)
