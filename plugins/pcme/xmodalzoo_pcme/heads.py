"""The PCME Gaussian head: μ from a global feature plus a local-attention residual (PIE), log σ² from
its own attention pooling plus a global term.

μ = L2norm(LayerNorm(g + sigmoid(Linear(Σ_l α_l x_l)))), α = softmax over valid l of W2·tanh(W1·x_l)
(no biases), with g = Linear(pooled) (identity for a text GRU whose pooled size already equals D).
logvar = Linear(Σ_l β_l x_l) + Linear(pooled), β another attention; for text with ``sigma_gru`` the
second term is a small biGRU over the word embeddings (output at the last token) instead.
logvar is unconstrained: no LayerNorm, sigmoid or normalisation.  With ``sigma_output: logsigma``
(official PCME checkpoints) the branch computes log σ and the head returns 2 · log σ = log σ².
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xmodalzoo.plugin_api import ComponentConfig, EncoderOutput, GaussianEmbedding, PointEmbedding


class AttentionPool(nn.Module):
    """One-head additive attention pooling: α = softmax_l(W2·tanh(W1·x_l)) over valid l; returns Σ α_l x_l."""

    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, 1, bias=False)
        nn.init.xavier_uniform_(self.w1.weight)
        nn.init.xavier_uniform_(self.w2.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F) pooled features and (B, L) attention weights (0 on padding; all 0 for an empty item)."""
        scores = self.w2(torch.tanh(self.w1(x))).squeeze(-1)  # (B, L)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=1) * mask  # an item without valid positions pools to zero
        return torch.einsum("bl,blf->bf", attn, x), attn


class PCMEMeanConfig(ComponentConfig):
    """Options of PCME's μ branch (the ``pcme_mean`` head, and the μ half of ``pcme_gaussian``)."""

    source: Literal["local", "inputs"] = Field(
        "local", description="fragments to attend over: local features (images) or input word embeddings (text)"
    )
    d_hidden: int = Field(1024, ge=1, description="hidden size of the attention scorer (COCO: 1024 image, 150 text)")
    project_pooled: bool | None = Field(
        None, description="Linear(pooled -> D) for the global μ term; null = only when the pooled size differs from D"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the attention residual of μ")


class PCMEGaussianConfig(PCMEMeanConfig):
    """Options of the PCME Gaussian head (one registered head; set per modality in the recipe)."""

    sigma_gru: bool = Field(
        False, description="text σ: a second biGRU (D/2 per direction) over the fragments instead of Linear(pooled)"
    )
    logvar_init: float = Field(
        0.0,
        description="initial bias of the log σ² output (0: σ ≈ 1 per dimension at the start, as published; "
        "a negative value starts from near-point embeddings, which short from-scratch runs need)",
    )
    sigma_output: Literal["logvar", "logsigma"] = Field(
        "logvar",
        description="what the σ branch's raw output means: logvar = log σ² (ours, PCME++), or logsigma = log σ "
        "(official PCME checkpoints, set by zoo convert), which the head doubles into log σ²",
    )


def prefix_lengths(mask: torch.Tensor) -> torch.Tensor:
    """(B,) number of valid positions; raises unless the valid positions come first (what a GRU needs)."""
    lengths = mask.sum(1)
    expected = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(expected, mask):
        raise ValueError("sigma_gru needs masks whose valid positions come first (right padding)")
    return lengths


class SigmaGRU(nn.Module):
    """Bidirectional GRU over the fragments; (B, D) output (both directions) at the last valid position."""

    def __init__(self, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"sigma_gru needs an even embed_dim (D/2 per direction), got {embed_dim}")
        self.rnn = nn.GRU(in_dim, embed_dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = prefix_lengths(mask).clamp(min=1)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        last = (lengths - 1).to(out.device)[:, None, None].expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)


class PCMEMeanHead(nn.Module):
    """PCME's μ branch: unit-norm μ = L2norm(LayerNorm(g + sigmoid(Linear(attention pool)))).

    Registered alone as ``pcme_mean`` (a point embedding, the deterministic ablation) and extended
    with the σ branch by :class:`PCMEGaussianHead`.
    """

    def __init__(self, cfg: PCMEMeanConfig, pooled_dim: int, fragment_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        project = cfg.project_pooled if cfg.project_pooled is not None else pooled_dim != embed_dim
        if not project and pooled_dim != embed_dim:
            raise ValueError(
                f"pcme_gaussian with project_pooled=false needs the pooled size ({pooled_dim}) to equal "
                f"embed_dim ({embed_dim})"
            )
        self.global_proj = nn.Linear(pooled_dim, embed_dim) if project else nn.Identity()
        self.mu_attention = AttentionPool(fragment_dim, cfg.d_hidden)
        self.mu_residual = nn.Linear(fragment_dim, embed_dim)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        nn.init.xavier_uniform_(self.mu_residual.weight)
        nn.init.zeros_(self.mu_residual.bias)

    def fragments(self, feats: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.local if self.cfg.source == "local" else feats.inputs
        assert x is not None
        mask = feats.mask.bool()
        if x.shape[:2] != mask.shape:
            raise ValueError(f"pcme_gaussian: fragments {tuple(x.shape)} do not match mask {tuple(mask.shape)}")
        return x, mask

    def mean(self, feats: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) unit-norm μ and the (B, L) attention used for it."""
        x, mask = self.fragments(feats)
        attended, attn = self.mu_attention(x, mask)
        residual = self.dropout(torch.sigmoid(self.mu_residual(attended)))
        mu = self.layer_norm(self.global_proj(feats.pooled) + residual)
        return F.normalize(mu, dim=-1), attn

    def forward(self, feats: EncoderOutput) -> PointEmbedding:
        mu, attn = self.mean(feats)
        return PointEmbedding(mu, aux={"mu_attention": attn})


class PCMEGaussianHead(PCMEMeanHead):
    """Gaussian embedding of one modality: unit-norm μ (PIE) and unconstrained logvar = log σ²."""

    def __init__(self, cfg: PCMEGaussianConfig, pooled_dim: int, fragment_dim: int, embed_dim: int) -> None:
        super().__init__(cfg, pooled_dim, fragment_dim, embed_dim)
        self.sigma_attention = AttentionPool(fragment_dim, cfg.d_hidden)
        self.sigma_local = nn.Linear(fragment_dim, embed_dim)
        self.sigma_gru = SigmaGRU(fragment_dim, embed_dim) if cfg.sigma_gru else None
        self.sigma_global = None if cfg.sigma_gru else nn.Linear(pooled_dim, embed_dim)
        nn.init.xavier_uniform_(self.sigma_local.weight)
        nn.init.constant_(self.sigma_local.bias, cfg.logvar_init)

    def logvar(self, feats: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) log σ² and the (B, L) attention used for it."""
        x, mask = self.fragments(feats)
        attended, attn = self.sigma_attention(x, mask)
        out = self.sigma_local(attended)
        if self.sigma_gru is not None:
            out = out + self.sigma_gru(x, mask)
        else:
            assert self.sigma_global is not None
            out = out + self.sigma_global(feats.pooled)
        if self.cfg.sigma_output == "logsigma":  # log σ² = 2 log σ
            out = 2.0 * out
        return out, attn

    def forward(self, feats: EncoderOutput) -> GaussianEmbedding:  # type: ignore[override]
        mu, mu_attn = self.mean(feats)
        logvar, sigma_attn = self.logvar(feats)
        return GaussianEmbedding(mu, logvar, aux={"mu_attention": mu_attn, "sigma_attention": sigma_attn})


def _dims(cfg: PCMEMeanConfig, encoder: Any) -> tuple[int, int]:
    fragment_dim = encoder.local_dim if cfg.source == "local" else encoder.input_dim
    return int(encoder.pooled_dim), int(fragment_dim)


def build_pcme_gaussian(cfg: PCMEGaussianConfig, *, encoder: Any, embed_dim: int, **_: object) -> PCMEGaussianHead:
    """PCME Gaussian head: attention-residual unit-norm μ and unconstrained log σ²."""
    return PCMEGaussianHead(cfg, *_dims(cfg, encoder), embed_dim)


def build_pcme_mean(cfg: PCMEMeanConfig, *, encoder: Any, embed_dim: int, **_: object) -> PCMEMeanHead:
    """PCME's μ branch only (PIE attention residual), as a unit-norm point embedding."""
    return PCMEMeanHead(cfg, *_dims(cfg, encoder), embed_dim)
