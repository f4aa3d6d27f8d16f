"""The DivE method: dive_slots heads on both sides, smooth-Chamfer similarity, the dive loss.

The defaults are the released COCO recipe (BUTD regions + GloVe/biGRU); the training schedule
(200 images × 5 captions per batch, AdamW 1e-3 with × 0.1 groups, cosine over 80 epochs, grad-clip 1,
mixed precision) lives in ``recipes/dive_coco.yaml``'s ``train:`` section.
"""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from xmodalzoo.plugin_api import Component, Method, MethodConfig, assemble_method


class DivEConfig(MethodConfig):
    """DivE defaults (COCO, BUTD regions + biGRU): K = 4 slots, 4 shared iterations, smooth-Chamfer α = 16."""

    embed_dim: int = Field(1024, description="D: size of every element (and of the slots)")
    image_encoder: Component["image_encoder"] = Field(
        {"type": "regions", "in_dim": 2048, "out_dim": 1024, "drop_regions": 0.2, "dropout": 0.1,
         "mlp_input": "projection"},
        description="36 x 2048 BUTD regions; f(x) = dropout_0.1(Linear(x) + MLP(Linear(x))), 20 % of regions dropped",
    )
    text_encoder: Component["text_encoder"] = Field(
        {"type": "bigru", "word_dim": 300, "hidden_dim": 1024, "bidirectional": True, "combine": "mean",
         "global_feature": "final_states", "dropout": 0.1, "augment": {"style": "vse", "perturb_prob": 0.2}},
        description="300-d word embeddings (GloVe when given), biGRU 1024 per direction, directions averaged; "
        "global = mean of the two final states; 20 % of tokens perturbed (masked / random word / deleted)",
    )
    image_head: Component["head"] = Field({"type": "dive_slots"}, description="slots over the projected regions")
    text_head: Component["head"] = Field({"type": "dive_slots"}, description="slots over the word embeddings")
    # only the type: the options are smooth_chamfer's own defaults (α = 16), so that the one-line ablation
    # --set method.similarity.type=chamfer (or mil_max, set_match_prob) carries no foreign option along
    similarity: Component["similarity"] = Field({"type": "smooth_chamfer"},
                                                description="smooth-Chamfer (α = 16) over the K x K' element cosines")
    loss: Component["loss"] = Field({"type": "dive"}, description="triplet (hardest, margin 0.2) + MMD + set uniformity")


def build_dive(cfg: DivEConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None) -> Method:
    """DivE: sets of diverse embeddings from slot-competition modules, compared by smooth-Chamfer."""
    return assemble_method(cfg, train_captions=train_captions, tokenizer=tokenizer)
