"""The DivE head: a set-prediction module over local features or word embeddings, plus a global feature.

Elements e_k = L2norm(LayerNorm(global) + slot_k), k = 1..K, as a :class:`SetEmbedding` (N, K, D);
``aux["slots"]`` holds the raw slots (N, K, D, before the residual, what the set-uniformity term
reads) and ``aux["attention"]`` the last iteration's weights (N, K, L), averaged over the attention
heads, after the renormalisation over inputs (each slot's row sums to 1 over the inputs).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import ComponentConfig, EncoderOutput, SetEmbedding

from .positional import sine_position_code
from .slots import SetPredictionModule


class DivEHeadConfig(ComponentConfig):
    """Options of the DivE head; the defaults are the released COCO recipe (both modalities)."""

    num_slots: int = Field(4, ge=1, description="K: slots, i.e. embeddings per item")
    iterations: int = Field(4, ge=1, description="T: refinement iterations of the slots")
    share_weights: bool = Field(True, description="one aggregation block applied T times (released code and paper)")
    attention_heads: int = Field(4, ge=1, description="heads of the slot-competition cross-attention")
    head_dim: int = Field(512, ge=1, description="size of one attention head")
    ff_mult: float = Field(4.0, gt=0, description="feed-forward hidden size = ff_mult x D")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the attention output and in the feed-forward")
    padding: Literal["official", "exclude"] = Field(
        "official",
        description="padded inputs: official = masked before the softmax over slots as in the released code, so "
        "each still gets weight 1/K per slot and changes the output; exclude = zero weight",
    )
    source: Literal["auto", "local", "inputs"] = Field(
        "auto", description="what the slots attend over: auto = local features for images, word embeddings for text"
    )
    position_code: Literal["auto", "none", "sine"] = Field(
        "auto", description="code added to the keys: auto = sine for text, none for images"
    )
    positions: Literal["padded_length", "caption_length"] = Field(
        "padded_length",
        description="length n in θ_p = p/n·2π: padded_length = the batch's padded width (released code: a caption's "
        "code depends on its batch), caption_length = the caption's own length",
    )
    global_feature: Literal["auto", "pooled", "max_local"] = Field(
        "auto",
        description="the global feature: pooled = the encoder's pooled feature (text: mean of the two final biGRU "
        "states), max_local = max over valid local features (images: projected regions/cells); auto = max_local "
        "for images, pooled for text",
    )
    project_global: bool = Field(False, description="Linear(global dim -> D) on the global feature (needed when they differ)")
    input_projection: Literal["none", "linear_mlp"] = Field(
        "none",
        description="project the local features first: linear_mlp = f(x) = Linear(x) + MLP(Linear(x)) to D, MLP "
        "D -> D/2 -> D with BatchNorm (the released grid/CNN path; the regions encoder does it itself)",
    )
    projection_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on f(x) (input_projection only)")
    slot_init: Literal["learned", "gaussian"] = Field(
        "learned", description="learned = K learned queries (released code); gaussian = sampled N(μ, σ²) slots (paper)"
    )
    update: Literal["residual", "gru"] = Field(
        "residual", description="slot update after attention: residual (released code) or a GRU cell (paper)"
    )


class LocalProjection(nn.Module):
    """f(x) = dropout(Linear(x) + MLP(Linear(x))), MLP = Linear-BN-ReLU-Linear; BN sees valid positions only."""

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, dim)
        hidden = max(1, dim // 2)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) projections of (B, L, in_dim) features; zeros at invalid positions."""
        projected = self.fc(x[valid])
        out = x.new_zeros(*x.shape[:2], self.fc.out_features)
        out[valid] = self.dropout(projected + self.mlp(projected))
        return out


def masked_max(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Max over valid positions of (B, L, F) -> (B, F); an item with no valid position gives zeros."""
    filled = x.masked_fill(~valid[..., None], torch.finfo(x.dtype).min)
    return torch.where(valid.any(1, keepdim=True), filled.amax(1), torch.zeros_like(filled[:, 0]))


class DivEHead(nn.Module):
    """Set of K diverse embeddings: slots from a set-prediction module + LayerNorm(global), L2-normalised."""

    def __init__(
        self, cfg: DivEHeadConfig, *, source: Literal["local", "inputs"], attend_dim: int, local_dim: int,
        global_dim: int, embed_dim: int, position_code: bool, global_feature: Literal["pooled", "max_local"],
    ) -> None:
        super().__init__()
        self.cfg, self.source, self.global_source = cfg, source, global_feature
        self.num_slots, self.use_position_code = cfg.num_slots, position_code
        self.projection = (LocalProjection(local_dim, embed_dim, cfg.projection_dropout)
                           if cfg.input_projection == "linear_mlp" else None)
        if cfg.project_global:
            self.global_fc: nn.Module = nn.Linear(global_dim, embed_dim)
        elif global_dim != embed_dim:
            raise ValueError(f"dive_slots: the global feature has {global_dim} dims but embed_dim is {embed_dim}; "
                             "set project_global: true (or make the encoder's output match)")
        else:
            self.global_fc = nn.Identity()
        self.spm = SetPredictionModule(
            cfg.num_slots, embed_dim, attend_dim, iterations=cfg.iterations, share_weights=cfg.share_weights,
            heads=cfg.attention_heads, head_dim=cfg.head_dim, ff_mult=cfg.ff_mult, dropout=cfg.dropout,
            update=cfg.update, slot_init=cfg.slot_init,
        )
        self.global_norm = nn.LayerNorm(embed_dim)

    def key_code(self, valid: torch.Tensor, dim: int) -> torch.Tensor | None:
        """Sine position code (B, L, dim) for the keys, or None."""
        if not self.use_position_code:
            return None
        width = valid.shape[1]
        if self.cfg.positions == "padded_length":
            lengths = torch.full((valid.shape[0],), width, device=valid.device)
        else:
            lengths = valid.sum(1)
        return sine_position_code(lengths, width, dim)

    def forward(self, feats: EncoderOutput) -> SetEmbedding:
        valid = feats.mask.bool()
        local = feats.local if self.projection is None else self.projection(feats.local, valid)
        attended = local if self.source == "local" else feats.inputs
        assert attended is not None  # EncoderOutput fills inputs with local
        if attended.shape[:2] != valid.shape:
            raise ValueError(f"dive_slots: {self.source} features {tuple(attended.shape)} do not match the mask "
                             f"{tuple(valid.shape)}")
        code = self.key_code(valid, attended.shape[-1])
        slots, weights = self.spm(attended, valid, self.cfg.padding, None if code is None else code.to(attended.dtype))
        glob = feats.pooled if self.global_source == "pooled" else masked_max(local, valid)
        elements = F.normalize(self.global_norm(self.global_fc(glob))[:, None, :] + slots, dim=-1)
        return SetEmbedding(elements, aux={"slots": slots, "attention": weights.mean(1)})


def build_dive_slots(cfg: DivEHeadConfig, *, encoder: Any, embed_dim: int, modality: str, **_: object) -> DivEHead:
    """DivE set-prediction head: K slots compete for the inputs; elements = LayerNorm(global) + slot."""
    if modality not in ("image", "text"):
        raise ValueError(f"dive_slots: modality must be 'image' or 'text', got {modality!r}")
    image = modality == "image"
    source = cfg.source if cfg.source != "auto" else ("local" if image else "inputs")
    global_feature = cfg.global_feature if cfg.global_feature != "auto" else ("max_local" if image else "pooled")
    position_code = cfg.position_code == "sine" or (cfg.position_code == "auto" and not image)
    local_dim = int(encoder.local_dim)
    projected_dim = embed_dim if cfg.input_projection == "linear_mlp" else local_dim
    attend_dim = projected_dim if source == "local" else int(encoder.input_dim)
    global_dim = int(encoder.pooled_dim) if global_feature == "pooled" else projected_dim
    return DivEHead(cfg, source=source, attend_dim=attend_dim, local_dim=local_dim, global_dim=global_dim,
                    embed_dim=embed_dim, position_code=position_code, global_feature=global_feature)
