"""The PVSE method: K PIE embeddings per item on both sides, MIL max similarity, PVSE loss."""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from xmodalzoo.plugin_api import Component, Method, MethodConfig, assemble_method


class PVSEConfig(MethodConfig):
    """PVSE defaults (COCO): K = 2 PIE heads on both sides, mil_max similarity, pvse loss.

    The text global feature is the bigru encoder's ``global_feature``: ``final_states`` (concatenated
    final GRU states, the default) or ``last_token`` (GRU output at the last token: the "legacy" path
    the released PVSE checkpoints were trained with).
    """

    image_head: Component["head"] = Field({"type": "pvse_pie", "num_heads": 2}, description="image head")
    text_head: Component["head"] = Field({"type": "pvse_pie", "num_heads": 2}, description="text head")
    similarity: Component["similarity"] = Field({"type": "mil_max"}, description="similarity of two embedding sets")
    loss: Component["loss"] = Field(
        {"type": "pvse", "margin": 0.1, "diversity_weight": 0.1, "mmd_weight": 0.01, "mmd_gamma": 0.5},
        description="hardest-negative triplet on MIL scores, plus diversity and MMD regularisers when K > 1",
    )


def build_pvse(cfg: PVSEConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> Method:
    """PVSE: polysemous (K-embedding) visual-semantic embedding with multiple-instance matching."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer)
