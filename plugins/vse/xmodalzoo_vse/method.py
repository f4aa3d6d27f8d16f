"""The VSE method (VSE++ / VSE∞): one L2-normalised vector per item, cosine similarity, hinge triplet loss."""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from xmodalzoo.plugin_api import Component, Method, MethodConfig, assemble_method


class VSEConfig(MethodConfig):
    """VSE∞ defaults: GPO-pooled heads, cosine similarity, triplet loss with a one-epoch all-negatives warm-up."""

    image_head: Component["head"] = Field({"type": "vse_pool", "pooling": "gpo"}, description="image head")
    text_head: Component["head"] = Field({"type": "vse_pool", "pooling": "gpo"}, description="text head")
    similarity: Component["similarity"] = Field({"type": "cosine"}, description="similarity of two embeddings")
    loss: Component["loss"] = Field(
        {"type": "triplet", "margin": 0.2, "hardest": True, "warmup_epochs": 1, "reduction": "sum"},
        description="hinge triplet: all negatives in the first epoch, hardest negative afterwards; summed over the batch",
    )


def build_vse(cfg: VSEConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> Method:
    """VSE++ / VSE∞: pooled point embeddings, cosine similarity, hardest-negative triplet loss."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer)
