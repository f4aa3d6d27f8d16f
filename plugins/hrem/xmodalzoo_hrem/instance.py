"""HREM's instance-level relation module (training only): relation-enhanced embeddings v̄, ū.

The batch is laid out as B (image, caption) pairs, one per caption, as in the released code: the
image of caption t is node t, and an image with two captions in the batch is two (identical)
nodes.  The 2B unit embeddings are one sequence for a transformer whose attention logits get
λ·S on the graph's connected edges and −∞ elsewhere (:mod:`.relations`):

* ``fusion`` (the released code's default): one graph over all 2B nodes, ``num_layers`` layers;
* ``standalone``: a cross-modal layer (images attend to captions and captions to images, i2t/t2i
  edges only) followed by an intra-modal layer (i2i/t2t edges only).

Outputs are re-L2-normalised.  The module returns, for the loss (``LossContext.extras``): ``image``
and ``text`` (v̄, ū), ``image_plain`` and ``text_plain`` (v, u in the same pair layout),
``positives`` (B, B) (pairs showing the same dataset image), ``relevance_i2t`` and
``relevance_t2i`` (the learned cross-modal relevance, for the regulariser).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import Batch, BatchModule, ComponentConfig, PointEmbedding

from .relations import AssociationGraph, RelationGraph


class HREMRelationConfig(ComponentConfig):
    """Options of HREM's instance-level relation module (defaults: the released code, Flickr30K)."""

    warmup_steps: int = Field(8000, ge=0, description="optimizer steps before the module (and its loss terms) switch on")
    mechanism: Literal["fusion", "standalone"] = Field(
        "fusion", description="fusion: one graph over all 2B nodes; standalone: cross-modal layer, then intra-modal layer")
    num_layers: int = Field(1, ge=1, description="fusion: transformer layers over the graph")
    num_heads: int = Field(16, ge=1, description="attention heads")
    ff_dim: int | None = Field(None, gt=0, description="feed-forward size (None: embed_dim)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout inside the transformer layers")
    relevance_scale: float = Field(1.0, ge=0, description="λ: weight of the relevance S added to the attention logits "
                                                          "(1.0 Flickr30K, 1.5 COCO)")
    connect_share: float = Field(0.5, gt=0, le=1, description="share of each block's columns a node connects to")
    topk: int = Field(10, ge=1, description="top-k word-region scores fed to the cross-modal relevance MLPs")
    sigma: float = Field(1.0, gt=0, description="σ in the intra-modal relevance exp(−‖e_a − e_b‖ / σ)")
    scan_scores: bool = Field(True, description="word-region scores as in the released code (leaky ReLU 0.1 and "
                                                "SCAN's L2 normalisation over words / regions); false: plain cosines")
    relevance_residual: bool = Field(True, description="add the mean fragment score p to the MLP's relevance (released code)")
    mlp_dropout: float = Field(0.0, ge=0, lt=1, description="dropout inside the relevance MLPs")
    max_score_elements: int = Field(1 << 26, ge=1, description="word-region scores computed at once (memory bound)")


class InstanceRelationModule(BatchModule):
    """Relation-enhanced embeddings of a training batch through the cross-embedding association graph."""

    def __init__(self, cfg: HREMRelationConfig, embed_dim: int) -> None:
        super().__init__(cfg.warmup_steps)
        if embed_dim % cfg.num_heads:
            raise ValueError(f"hrem_relation: embed_dim {embed_dim} is not divisible by num_heads {cfg.num_heads}")
        self.cfg = cfg
        self.graph = AssociationGraph(cfg.topk, cfg.connect_share, cfg.sigma, cfg.scan_scores, 0.1,
                                      cfg.relevance_residual, cfg.mlp_dropout, cfg.max_score_elements)

        def layers(n: int) -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(embed_dim, cfg.num_heads, cfg.ff_dim or embed_dim, cfg.dropout,
                                               batch_first=True)
            return nn.TransformerEncoder(layer, n, enable_nested_tensor=False)

        if cfg.mechanism == "fusion":
            self.gnn = layers(cfg.num_layers)
        else:
            self.cross = layers(1)
            self.intra = layers(1)

    def relate(self, nodes: torch.Tensor, graph: RelationGraph) -> torch.Tensor:
        """(2B, D) transformer outputs for the (2B, D) nodes under the graph's attention bias."""
        scale = self.cfg.relevance_scale
        x = nodes[None]

        def bias(*blocks: str) -> torch.Tensor:  # the attention mask must have the queries' dtype (autocast)
            return graph.attention_bias(scale, blocks or ("i2i", "i2t", "t2i", "t2t")).to(x.dtype)

        if self.cfg.mechanism == "fusion":
            x = self.gnn(x, mask=bias())
        else:
            x = self.cross(x, mask=bias("i2t", "t2i"))
            x = self.intra(x, mask=bias("i2i", "t2t"))
        return x[0]

    def forward(self, image: Any, text: Any, batch: Batch) -> dict[str, Any]:
        rows = batch.caption_image
        regions, region_mask = fragments_of(image, "image")
        words, word_mask = fragments_of(text, "text")
        v, u = image.vectors[rows], text.vectors
        graph = self.graph(v, u, regions[rows], region_mask[rows], words, word_mask)
        enhanced = self.relate(torch.cat([v, u]), graph)
        v_bar, u_bar = F.normalize(enhanced, dim=-1).split(len(u))
        pair_image = batch.image_index[rows]
        return {
            "image": PointEmbedding(v_bar), "text": PointEmbedding(u_bar),
            "image_plain": PointEmbedding(v), "text_plain": PointEmbedding(u),
            "positives": pair_image[:, None] == pair_image[None, :],
            "relevance_i2t": graph.relevance["i2t"], "relevance_t2i": graph.relevance["t2i"],
        }


def fragments_of(emb: Any, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (B, L, D) fragments and (B, L) mask a head left in ``emb.aux`` (HREM's head does)."""
    aux = getattr(emb, "aux", {}) or {}
    if "fragments" not in aux or "mask" not in aux:
        raise ValueError(f"hrem_relation needs the {side} head to put 'fragments' and 'mask' in the embedding's aux "
                         f"(the hrem_fragments head does); got {type(emb).__name__} with aux keys {sorted(aux)}")
    return aux["fragments"], aux["mask"].bool()


def build_hrem_relation(cfg: HREMRelationConfig, *, embed_dim: int, **_: Any) -> InstanceRelationModule:
    """HREM's training-only instance-level relation module (association graph + masked transformer)."""
    return InstanceRelationModule(cfg, embed_dim)
