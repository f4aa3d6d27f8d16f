"""The VSE method (VSE++ / VSE∞): one L2-normalised vector per item, cosine similarity, hinge triplet loss."""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from xmodalzoo.plugin_api import Component, Method, MethodConfig, assemble_method


class VSEConfig(MethodConfig):
    """VSE∞'s published COCO setting (BUTD regions + BiGRU, COCO 1K RSUM 520.8): GPO-pooled heads,
    cosine similarity, triplet loss with a one-epoch all-negatives warm-up."""

    embed_dim: int = Field(1024, ge=1, description="size of the joint embedding")
    image_encoder: Component["image_encoder"] = Field(
        {"type": "regions", "in_dim": 2048, "out_dim": 1024, "drop_regions": 0.2},
        description="36 precomputed BUTD regions per image: Linear + residual MLP to 1024-d, 20 % dropped in training",
    )
    text_encoder: Component["text_encoder"] = Field(
        {"type": "bigru", "word_dim": 300, "hidden_dim": 1024, "combine": "mean",
         "augment": {"style": "vse", "perturb_prob": 0.2}},
        description="word embeddings + biGRU, directions averaged (1024-d), 20 % token perturbation in training",
    )
    image_head: Component["head"] = Field({"type": "vse_pool", "pooling": "gpo"},
                                          description="GPO over the regions (no projection: they are 1024-d)")
    text_head: Component["head"] = Field({"type": "vse_pool", "pooling": "gpo"},
                                         description="GPO over the word states (no projection: they are 1024-d)")
    similarity: Component["similarity"] = Field({"type": "cosine"}, description="similarity of two embeddings")
    loss: Component["loss"] = Field(
        {"type": "triplet", "margin": 0.2, "hardest": True, "warmup_epochs": 1, "reduction": "sum"},
        description="hinge triplet: all negatives in the first epoch, hardest negative afterwards; summed over the batch",
    )


def build_vse(cfg: VSEConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> Method:
    """VSE++ / VSE∞: pooled point embeddings, cosine similarity, hardest-negative triplet loss."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer)
