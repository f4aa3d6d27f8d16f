"""The simplest head: project the pooled feature (optionally plus mean of local features) to a unit vector."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..config import ComponentConfig
from ..embeddings import PointEmbedding
from ..encoders.base import EncoderOutput


class LinearHeadConfig(ComponentConfig):
    """Options of the linear point head."""

    source: Literal["pooled", "local_mean", "local_max"] = Field(
        "pooled", description="which encoder feature to project"
    )
    normalize: bool = True


class LinearHead(nn.Module):
    """Linear projection of one pooled feature to a (normalised) point embedding."""

    def __init__(self, cfg: LinearHeadConfig, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(in_dim, embed_dim)

    def forward(self, feats: EncoderOutput) -> PointEmbedding:
        x = pool(feats, self.cfg.source)
        v = self.proj(x)
        return PointEmbedding(F.normalize(v, dim=-1) if self.cfg.normalize else v)


def pool(feats: EncoderOutput, source: str) -> torch.Tensor:
    """Pooled feature, or masked mean/max of the local features."""
    if source == "pooled":
        return feats.pooled
    mask = feats.mask.unsqueeze(-1)
    if source == "local_mean":
        return (feats.local * mask).sum(1) / mask.sum(1).clamp(min=1)
    return feats.local.masked_fill(~mask, float("-inf")).max(1).values


def build_linear_head(cfg: LinearHeadConfig, *, encoder, embed_dim: int, **_: object) -> LinearHead:  # type: ignore[no-untyped-def]
    """Linear projection of a pooled feature to an L2-normalised point."""
    in_dim = encoder.pooled_dim if cfg.source == "pooled" else encoder.local_dim
    return LinearHead(cfg, in_dim, embed_dim)
