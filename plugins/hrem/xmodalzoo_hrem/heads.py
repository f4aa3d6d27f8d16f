"""The HREM head: fragment-level relations within one item (regions of an image, words of a caption).

Per valid fragment a projection to ``embed_dim``; one post-LN transformer encoder layer over the
item's fragments (padding masked); the item embedding is β·MaxK(projected fragments) +
(1 − β)·mean(transformer outputs over valid fragments), then x / (‖x‖ + 1e-8).  The projected
fragments ride along in ``aux`` (``fragments`` (B, L, D), ``mask`` (B, L)) for HREM's
instance-level module, which scores words against regions.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import ComponentConfig, EncoderOutput, PointEmbedding

from .pooling import l2_normalize, masked_mean, maxk_pool


class HREMHeadConfig(ComponentConfig):
    """Options of the HREM fragment head (defaults: the released code)."""

    projection: Literal["none", "linear", "linear_mlp"] = Field(
        "linear",
        description="per valid fragment: none (fragment dim must be embed_dim, e.g. after the regions encoder, "
        "which already applies Linear + MLP), linear (BERT tokens), or linear_mlp (Linear + MLP dim -> embed_dim/2 "
        "-> embed_dim with BatchNorm, summed: HREM's region projection)",
    )
    num_layers: int = Field(1, ge=0, description="transformer encoder layers over the fragments (0: none)")
    num_heads: int = Field(16, ge=1, description="attention heads of the fragment transformer")
    ff_dim: int | None = Field(None, gt=0, description="feed-forward size of the transformer (None: embed_dim)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout inside the transformer layer")
    maxk: int = Field(2, ge=1, description="MaxK pooling: mean of the top-k values per dimension")
    maxk_weight: float = Field(0.8, ge=0, le=1, description="β: embedding = β·MaxK + (1 − β)·mean(transformer)")
    maxk_carryover: bool = Field(
        False,
        description="reproduce the released code's MaxK quirk: after an item with fewer than maxk fragments, every "
        "later item of the batch is pooled with that smaller k (makes embeddings depend on the batch)",
    )
    eps: float = Field(1e-8, gt=0, description="x / (‖x‖ + eps) normalisation of the item embedding")


class FragmentProjection(nn.Module):
    """Linear (and, for ``linear_mlp``, + MLP with BatchNorm) applied to the valid fragments only,
    so BatchNorm statistics ignore padding; padded positions come out as 0."""

    def __init__(self, kind: str, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        if kind == "none" and in_dim != embed_dim:
            raise ValueError(f"hrem_fragments with projection none needs fragment dim == embed_dim; got {in_dim} != "
                             f"{embed_dim} (use projection: linear or linear_mlp)")
        self.kind = kind
        self.fc = nn.Linear(in_dim, embed_dim) if kind != "none" else None
        hidden = max(embed_dim // 2, 1)
        self.mlp = (nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, embed_dim)) if kind == "linear_mlp" else None)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, embed_dim) projected fragments of (B, L, in_dim) ``x``; 0 where ``mask`` is False."""
        if self.fc is None:
            return x.masked_fill(~mask[..., None], 0.0)
        valid = x[mask]
        out = self.fc(valid)
        if self.mlp is not None:
            out = out + self.mlp(valid)
        full = out.new_zeros(*mask.shape, out.shape[-1])
        full[mask] = out
        return full


class HREMHead(nn.Module):
    """Fragments -> projection -> transformer layer -> β·MaxK + (1 − β)·mean -> normalised point."""

    def __init__(self, cfg: HREMHeadConfig, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        if cfg.num_layers and embed_dim % cfg.num_heads:
            raise ValueError(f"hrem_fragments: embed_dim {embed_dim} is not divisible by num_heads {cfg.num_heads}")
        self.cfg = cfg
        self.proj = FragmentProjection(cfg.projection, in_dim, embed_dim)
        self.aggr = None
        if cfg.num_layers:
            layer = nn.TransformerEncoderLayer(embed_dim, cfg.num_heads, cfg.ff_dim or embed_dim, cfg.dropout,
                                               batch_first=True)
            self.aggr = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)

    def forward(self, feats: EncoderOutput) -> PointEmbedding:
        mask = feats.mask.bool()
        if feats.local.shape[:2] != mask.shape:
            raise ValueError(f"fragments {tuple(feats.local.shape)} do not match mask {tuple(mask.shape)}")
        frags = self.proj(feats.local, mask)
        related = frags
        if self.aggr is not None:
            pad = ~mask
            pad[:, 0] &= mask.any(1)  # an item without fragments attends to one zero slot instead of to nothing
            related = self.aggr(frags, src_key_padding_mask=pad)
        beta = self.cfg.maxk_weight
        pooled = (beta * maxk_pool(frags, mask, self.cfg.maxk, self.cfg.maxk_carryover)
                  + (1 - beta) * masked_mean(related, mask))
        return PointEmbedding(l2_normalize(pooled, self.cfg.eps), aux={"fragments": frags, "mask": mask})


def build_hrem_head(cfg: HREMHeadConfig, *, encoder: Any, embed_dim: int, **_: object) -> HREMHead:
    """HREM fragment head: projection, one transformer layer, 0.8·MaxK + 0.2·mean, L2 norm."""
    return HREMHead(cfg, int(encoder.local_dim), embed_dim)
