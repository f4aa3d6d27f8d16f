"""Image encoder over precomputed region features (bottom-up attention, 36 x 2048 per image)."""
from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..config import ComponentConfig
from .base import EncoderOutput, ImageEncoder


class RegionEncoderConfig(ComponentConfig):
    """Options of the region-feature encoder."""

    in_dim: int = Field(2048, gt=0, description="size of one precomputed region feature")
    out_dim: int = Field(1024, gt=1, description="size of one projected region")
    drop_regions: float = Field(0.2, ge=0, lt=1, description="share of regions dropped per image at training time")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the projected regions (DivE: 0.1)")
    mlp_input: Literal["features", "projection"] = Field(
        "features",
        description="what the residual MLP reads: the region features, f(x) = Linear(x) + MLP(x) with MLP "
        "in_dim -> out_dim/2 -> out_dim (VSE∞), or the projection, f(x) = Linear(x) + MLP(Linear(x)) with MLP "
        "out_dim -> out_dim/2 -> out_dim (DivE)",
    )


def regions_to_tensor(features: Any) -> torch.Tensor:
    """(R, in_dim) region features (numpy array or tensor) as a float32 tensor."""
    return torch.as_tensor(np.asarray(features), dtype=torch.float32)


class RegionEncoder(ImageEncoder):
    """Per region f(x) = Linear(x) + MLP(x) (or + MLP(Linear(x)), see ``mlp_input``); ``pooled`` = mean
    of f over the kept regions."""

    input_kind = "features"

    def __init__(self, cfg: RegionEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = cfg.out_dim // 2
        self.fc = nn.Linear(cfg.in_dim, cfg.out_dim)
        mlp_in = cfg.in_dim if cfg.mlp_input == "features" else cfg.out_dim
        self.mlp = nn.Sequential(
            nn.Linear(mlp_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cfg.out_dim)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.pooled_dim = self.local_dim = cfg.out_dim
        self.input_dim = cfg.in_dim

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        if images.dim() != 3 or images.shape[-1] != self.cfg.in_dim:
            raise ValueError(
                f"region encoder expects (B, regions, {self.cfg.in_dim}) features, got shape {tuple(images.shape)}"
            )
        mask = torch.ones(images.shape[:2], dtype=torch.bool, device=images.device)
        if self.training and self.cfg.drop_regions > 0:
            mask = drop_regions(images.shape[0], images.shape[1], self.cfg.drop_regions, images.device)
        # only kept regions enter the projection, so BatchNorm statistics ignore dropped ones
        x = images[mask]
        projected = self.fc(x)
        kept = self.dropout(projected + self.mlp(x if self.cfg.mlp_input == "features" else projected))
        local = kept.new_zeros(*images.shape[:2], self.cfg.out_dim)
        local[mask] = kept
        pooled = local.sum(1) / mask.sum(1, keepdim=True).to(local.dtype)
        return EncoderOutput(pooled=pooled, local=local, mask=mask, inputs=images)

    def transform(self, train: bool) -> Callable[[Any], torch.Tensor]:
        return regions_to_tensor

    def backbone_parameters(self) -> list[str]:
        return []


def drop_regions(batch: int, regions: int, share: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(batch, regions) keep-mask dropping ⌊share · regions⌋ random regions per row (at least one kept)."""
    n_drop = min(int(share * regions), regions - 1)
    rank = torch.rand(batch, regions, device=device).argsort(1).argsort(1)
    return rank >= n_drop


def build_region_encoder(cfg: RegionEncoderConfig, **_: Any) -> RegionEncoder:
    """Precomputed region features -> Linear + MLP per region (VSE∞ style)."""
    return RegionEncoder(cfg)
