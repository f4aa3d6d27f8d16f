"""The VSE head: project each fragment, pool over the valid ones (mean, max or GPO), L2-normalise."""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import ComponentConfig, EncoderOutput, PointEmbedding

from .gpo import GPO


class VSEPoolConfig(ComponentConfig):
    """Options of the VSE pooling head."""

    source: Literal["local", "inputs"] = Field(
        "local", description="fragments to pool: encoder local features, or input-level fragments (word embeddings)"
    )
    project: bool | Literal["auto"] = Field(
        "auto", description="Linear(fragment dim -> embed_dim) per fragment; auto: only when the two differ "
        "(VSE∞: its encoders already give embed_dim-sized fragments, or project them); off needs equal dims",
    )
    mlp: bool = Field(
        False, description="add a residual 2-layer MLP (dim -> embed_dim/2 -> embed_dim, BN, ReLU) per fragment (VSE∞ regions)"
    )
    pooling: Literal["mean", "max", "gpo"] = Field("gpo", description="how to pool the valid fragments")
    gpo_pe_dim: int = Field(32, ge=2, description="GPO: size of the sinusoidal position code (even)")
    gpo_hidden_dim: int = Field(32, ge=1, description="GPO: hidden size of the bidirectional GRU")
    gpo_temperature: float = Field(0.1, gt=0, description="GPO: softmax temperature of the rank weights")
    normalize: bool = Field(True, description="L2-normalise the pooled vector")


class FragmentMLP(nn.Module):
    """Two-layer MLP with batch norm over fragments: dim -> hidden -> out."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VSEPoolHead(nn.Module):
    """Per-fragment projection, then masked mean/max/GPO pooling into one (normalised) vector per item."""

    def __init__(self, cfg: VSEPoolConfig, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        project = in_dim != embed_dim if cfg.project == "auto" else cfg.project
        if not project and in_dim != embed_dim:
            raise ValueError(
                f"vse_pool with project=false needs fragment dim == embed_dim; got {in_dim} != {embed_dim} "
                "(set project: true or change the encoder's output size)"
            )
        self.cfg = cfg
        self.proj = nn.Linear(in_dim, embed_dim) if project else None
        self.mlp = FragmentMLP(in_dim, max(embed_dim // 2, 1), embed_dim) if cfg.mlp else None
        self.gpo = GPO(cfg.gpo_pe_dim, cfg.gpo_hidden_dim, cfg.gpo_temperature) if cfg.pooling == "gpo" else None

    def fragments(self, feats: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, E) projected fragments (zero where padded) and the (B, L) bool mask."""
        x = feats.local if self.cfg.source == "local" else feats.inputs
        assert x is not None
        mask = feats.mask.bool()
        if x.shape[:2] != mask.shape:
            raise ValueError(f"fragments {tuple(x.shape)} do not match mask {tuple(mask.shape)}")
        if self.proj is None and self.mlp is None:
            return x.masked_fill(~mask[..., None], 0.0), mask
        # only valid fragments pass the projection, so batch-norm statistics ignore padding
        valid = x[mask]  # (V, F)
        out = valid if self.proj is None else self.proj(valid)
        if self.mlp is not None:
            out = out + self.mlp(valid)
        full = out.new_zeros(*mask.shape, out.shape[-1])
        full[mask] = out
        return full, mask

    def forward(self, feats: EncoderOutput) -> PointEmbedding:
        x, mask = self.fragments(feats)
        pooled = pool_fragments(x, mask, self.cfg.pooling, self.gpo)
        return PointEmbedding(F.normalize(pooled, dim=-1) if self.cfg.normalize else pooled)


def pool_fragments(x: torch.Tensor, mask: torch.Tensor, pooling: str, gpo: GPO | None = None) -> torch.Tensor:
    """(B, D) masked mean, masked max or GPO pooling of (B, L, D) fragments; items with no valid fragment give 0."""
    m = mask[..., None]
    if pooling == "mean":
        return (x * m).sum(1) / m.sum(1).clamp(min=1)
    if pooling == "max":
        pooled = x.masked_fill(~m, float("-inf")).max(1).values
        return torch.where(mask.any(1, keepdim=True), pooled, torch.zeros((), dtype=x.dtype, device=x.device))
    if pooling == "gpo":
        if gpo is None:
            raise ValueError("GPO pooling needs a GPO module")
        return gpo(x, mask)
    raise ValueError(f"unknown pooling {pooling!r}; expected mean, max or gpo")


def build_vse_pool(cfg: VSEPoolConfig, *, encoder: Any, embed_dim: int, **_: object) -> VSEPoolHead:
    """Per-fragment projection + mean/max/GPO pooling + L2 norm (VSE++ / VSE∞)."""
    in_dim = encoder.local_dim if cfg.source == "local" else encoder.input_dim
    return VSEPoolHead(cfg, int(in_dim), embed_dim)
