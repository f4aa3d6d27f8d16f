"""GPO, the generalised pooling operator of VSE∞: a learned weighting of per-dimension sorted features.

Each feature dimension is sorted over an item's valid fragments in descending order; rank ``k`` gets
weight θ_k, and the pooled vector is Σ_k θ_k · sorted_k.  The weights depend only on the number of
valid fragments N: θ = softmax_k(Linear(biGRU(pe(k))) / temperature) over k < N, where ``pe`` is a
sinusoidal position code.  Max pooling (θ one-hot at k = 0) and mean pooling (θ uniform) are special
cases.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) sinusoidal code of positions 0..length-1 (sin on even, cos on odd channels)."""
    if dim % 2:
        raise ValueError(f"sinusoidal position code needs an even dimension, got {dim}")
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def sort_fragments(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, D) features sorted per dimension over the valid fragments, descending; padding rows are 0 and last."""
    if features.dim() != 3 or mask.shape != features.shape[:2]:
        raise ValueError(
            f"expected features (B, L, D) and mask (B, L); got {tuple(features.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.bool()
    filled = features.masked_fill(~mask[..., None], float("-inf"))
    ranked = filled.sort(dim=1, descending=True).values
    lengths = mask.sum(1)
    valid_rank = torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None]
    return torch.where(valid_rank[..., None], ranked, torch.zeros((), dtype=ranked.dtype, device=ranked.device))


def gpo_pool(features: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, D) = Σ_k weights[:, k] · sorted_k, with ``weights`` (B, L) per rank (zero beyond each item's length)."""
    if weights.shape != mask.shape:
        raise ValueError(f"GPO weights must be (B, L) = {tuple(mask.shape)}, got {tuple(weights.shape)}")
    ranked = sort_fragments(features, mask)
    return (ranked * weights[..., None].to(ranked.dtype)).sum(1)


class GPO(nn.Module):
    """Learned pooling over a variable number of fragments (VSE∞).

    The bidirectional GRU's two directions are averaged (as in VSE∞) before the linear scorer.
    """

    def __init__(self, pe_dim: int = 32, hidden_dim: int = 32, temperature: float = 0.1) -> None:
        super().__init__()
        self.pe_dim = pe_dim
        self.hidden_dim = hidden_dim
        self.temperature = temperature
        self.gru = nn.GRU(pe_dim, hidden_dim, num_layers=1, batch_first=True, bidirectional=True)
        self.score = nn.Linear(hidden_dim, 1, bias=False)

    def rank_weights(self, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        """(B, max_len) softmax weights per rank for items with ``lengths`` valid fragments (0 beyond)."""
        if lengths.numel() and int(lengths.max()) > max_len:
            raise ValueError(f"a length {int(lengths.max())} exceeds the fragment axis of size {max_len}")
        device = lengths.device
        # weights depend on the length only: run the GRU once per distinct length
        distinct, inverse = torch.unique(lengths.clamp(min=1), return_inverse=True)
        codes = sinusoidal_positions(max_len, self.pe_dim, device=device)
        codes = codes.to(self.score.weight.dtype).expand(len(distinct), -1, -1)
        packed = pack_padded_sequence(codes, distinct.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=max_len)
        out = (out[..., : self.hidden_dim] + out[..., self.hidden_dim :]) / 2
        logits = self.score(out).squeeze(-1) / self.temperature  # (U, max_len)
        valid = torch.arange(max_len, device=device)[None, :] < distinct[:, None]
        weights = logits.masked_fill(~valid, float("-inf")).softmax(dim=1)
        weights = weights[inverse]
        return weights.masked_fill((lengths == 0)[:, None], 0.0)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, D) GPO-pooled features of (B, L, D) ``features`` with (B, L) bool ``mask`` (True = valid)."""
        mask = mask.bool()
        weights = self.rank_weights(mask.sum(1), features.shape[1])
        return gpo_pool(features, mask, weights)
