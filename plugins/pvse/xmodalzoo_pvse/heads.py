"""PIE heads: K attention heads over local features, each a residual on the global feature.

``pvse_pie`` returns a :class:`~xmodalzoo.embeddings.SetEmbedding` (N, K, D); ``pie_point`` is the
single-vector path (one head, a :class:`~xmodalzoo.embeddings.PointEmbedding` (N, D)) — the K = 1
baseline, with the same parameters and layout as ``pvse_pie`` with ``num_heads: 1``.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import ComponentConfig, Embedding, EncoderOutput, PointEmbedding, SetEmbedding

Source = Literal["auto", "local", "inputs"]


class PIEPointConfig(ComponentConfig):
    """Options of the single-head PIE head (the K = 1 baseline)."""

    source: Source = Field(
        "auto",
        description="what the heads attend over: local (grid cells, regions, word states) or inputs "
        "(word embeddings); auto = local for images, inputs for text",
    )
    hidden_dim: int | None = Field(
        None, gt=0, description="attention hidden size d_h (None: half the attended feature size)"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the residuals")
    project_global: bool = Field(
        True,
        description="project the pooled feature with Linear(pooled_dim -> embed_dim); false needs "
        "pooled_dim == embed_dim (the official text path, whose biGRU output is already D-dimensional)",
    )


class PIEConfig(PIEPointConfig):
    """Options of the PIE head with K attention heads."""

    num_heads: int = Field(2, ge=1, description="K: embeddings per item (1 = the single-embedding baseline)")


class MultiHeadAttentionPool(nn.Module):
    """K attention distributions over positions: softmax_L(W2 · tanh(W1 · x)), padding masked out."""

    def __init__(self, in_dim: int, hidden_dim: int, num_heads: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w_2 = nn.Linear(hidden_dim, num_heads, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attended vectors (N, K, d_in) and attention weights (N, K, L) of ``x`` (N, L, d_in)."""
        logits = self.w_2(torch.tanh(self.w_1(x))).transpose(1, 2)  # (N, K, L)
        valid = mask[:, None, :]
        attn = logits.masked_fill(~valid, float("-inf")).softmax(dim=-1)
        # an item without any valid position attends to nothing (instead of NaN)
        attn = torch.where(valid.any(-1, keepdim=True), attn, torch.zeros_like(attn))
        return attn @ x, attn


class PIEHead(nn.Module):
    """v_k = LayerNorm(global + sigmoid(fc(a_k))), L2-normalised; a_k = the k-th attention pool.

    ``aux`` of the output holds ``residuals`` (N, K, D, L2-normalised r_k) and ``attention`` (N, K, L).
    """

    def __init__(
        self,
        cfg: PIEPointConfig,
        *,
        pooled_dim: int,
        attend_dim: int,
        embed_dim: int,
        num_heads: int,
        source: Literal["local", "inputs"],
        as_set: bool,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.source = source
        self.as_set = as_set
        self.num_heads = num_heads
        hidden = cfg.hidden_dim or max(1, attend_dim // 2)
        if cfg.project_global:
            self.global_fc: nn.Module = nn.Linear(pooled_dim, embed_dim)
        elif pooled_dim != embed_dim:
            raise ValueError(
                f"project_global: false needs the encoder's pooled_dim == embed_dim; got {pooled_dim} != {embed_dim}"
            )
        else:
            self.global_fc = nn.Identity()
        self.attention = MultiHeadAttentionPool(attend_dim, hidden, num_heads)
        self.fc = nn.Linear(attend_dim, embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layer_norm = nn.LayerNorm(embed_dim)

    def forward(self, feats: EncoderOutput) -> Embedding:
        x = feats.local if self.source == "local" else feats.inputs
        assert x is not None  # EncoderOutput fills inputs with local
        if x.shape[:2] != feats.mask.shape:
            raise ValueError(
                f"PIE head: {self.source} features {tuple(x.shape)} do not match the mask {tuple(feats.mask.shape)}"
            )
        attended, attn = self.attention(x, feats.mask.bool())  # (N, K, d_in), (N, K, L)
        residual = self.dropout(torch.sigmoid(self.fc(attended)))  # (N, K, D)
        glob = self.global_fc(feats.pooled)  # (N, D)
        vectors = F.normalize(self.layer_norm(glob[:, None, :] + residual), dim=-1)
        aux: dict[str, Any] = {"residuals": F.normalize(residual, dim=-1), "attention": attn}
        if self.as_set:
            return SetEmbedding(vectors, aux=aux)
        return PointEmbedding(vectors[:, 0], aux=aux)


def _build(cfg: PIEPointConfig, encoder: Any, embed_dim: int, modality: str, num_heads: int, as_set: bool) -> PIEHead:
    if modality not in ("image", "text"):
        raise ValueError(f"PIE head: modality must be 'image' or 'text', got {modality!r}")
    source = cfg.source if cfg.source != "auto" else ("local" if modality == "image" else "inputs")
    attend_dim = int(encoder.local_dim if source == "local" else encoder.input_dim)
    return PIEHead(
        cfg, pooled_dim=int(encoder.pooled_dim), attend_dim=attend_dim, embed_dim=embed_dim,
        num_heads=num_heads, source=source, as_set=as_set,
    )


def build_pvse_pie(cfg: PIEConfig, *, encoder: Any, embed_dim: int, modality: str, **_: object) -> PIEHead:
    """PVSE's PIE head: K attention-residual embeddings per item (a set)."""
    return _build(cfg, encoder, embed_dim, modality, cfg.num_heads, as_set=True)


def build_pie_point(cfg: PIEPointConfig, *, encoder: Any, embed_dim: int, modality: str, **_: object) -> PIEHead:
    """Single-head PIE (the K = 1 baseline): one attention-residual point embedding per item."""
    return _build(cfg, encoder, embed_dim, modality, 1, as_set=False)
