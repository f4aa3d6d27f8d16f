"""The HREM method: fragment-level heads on both sides, cosine similarity, the HREM loss, and the
training-only instance-level relation module.

Defaults are the published Flickr30K setting (BUTD regions + BERT-base, λ = 1.0); recipes change
only what differs (COCO: λ = 1.5, distance cut-off 1.9, batch 256; the shapes benchmark: small
encoders).  ``batch_module: null`` trains without the instance-level module (the ablation).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from pydantic import Field, model_validator

from xmodalzoo.plugin_api import Component, Method, MethodConfig, assemble_method


class HREMConfig(MethodConfig):
    """HREM defaults (Flickr30K, released code): regions + BERT-base, 1024-d, distance-weighted triplet."""

    embed_dim: int = 1024
    image_encoder: Component["image_encoder"] = Field(
        {"type": "regions", "in_dim": 2048, "out_dim": 1024, "drop_regions": 0.2},
        description="BUTD region features; Linear + MLP (2048 -> 512 -> 1024, BN) per region, 20 % dropped when training",
    )
    text_encoder: Component["text_encoder"] = Field(
        {"type": "transformers", "model": "bert-base-uncased", "augment": {"style": "vse", "perturb_prob": 0.2}},
        description="BERT-base; 20 % of the word pieces perturbed when training (50 % masked, 10 % random, 40 % deleted)",
    )
    image_head: Component["head"] = Field(
        {"type": "hrem_fragments", "projection": "none"},
        description="regions are projected by the regions encoder already; fragment transformer + MaxK/mean pooling",
    )
    text_head: Component["head"] = Field(
        {"type": "hrem_fragments", "projection": "linear"},
        description="Linear(768 -> 1024) per token; fragment transformer + MaxK/mean pooling",
    )
    similarity: Component["similarity"] = Field({"type": "cosine"}, description="inference: plain cosine")
    loss: Component["loss"] = Field({"type": "hrem"}, description="distance-weighted triplet (+ enhanced terms and KL)")
    batch_module: Optional[Component["batch_module"]] = Field(
        {"type": "hrem_relation"}, description="training-only instance-level relation module (null: the ablation)")

    @model_validator(mode="after")
    def _heads_divide_embed_dim(self) -> "HREMConfig":
        """Attention heads must divide embed_dim: say so when the recipe is validated, not at build time."""
        parts = {"image_head": ("hrem_fragments", 16), "text_head": ("hrem_fragments", 16),
                 "batch_module": ("hrem_relation", 16)}
        for field, (kind, default) in parts.items():
            part = getattr(self, field)
            options = part.model_dump() if hasattr(part, "model_dump") else dict(part or {})
            if options.get("type") == kind:
                heads = options.get("num_heads", default)
                if isinstance(heads, int) and heads > 0 and self.embed_dim % heads:
                    raise ValueError(f"{field}.num_heads ({heads}) must divide embed_dim ({self.embed_dim})")
        return self


def build_hrem(cfg: HREMConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> Method:
    """HREM: fragment- and instance-level relation modelling; plain cosine retrieval at inference."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer)
