"""DivE's set-prediction module: K slots compete for the inputs over T weight-shared iterations.

Per iteration (an "aggregation block"): pre-LayerNorm on the slots and on the inputs; multi-head
cross-attention from slots (queries) to inputs (keys/values) whose softmax runs over the SLOT axis, so
that the slots compete for every input, after which each slot's weights are renormalised over the
inputs (+1e-7); a residual (or, in the paper's variant, a GRU update); a pre-LayerNorm GELU feed-forward
with a residual.  A final LayerNorm follows the last iteration.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

#: added to each slot's total weight before the renormalisation over inputs (released code)
RENORM_EPS = 1e-7

Padding = Literal["official", "exclude"]


def competition_weights(logits: torch.Tensor, valid: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Slot-competition attention weights (B, H, K, L) from logits (B, H, K, L) and a (B, L) mask.

    Softmax over the K slots, then each slot's weights divided by their sum over the inputs + 1e-7.
    ``padding``: ``official`` reproduces the released code, which masks padded inputs before the
    softmax over slots, so each padded input still gives every slot weight 1/K; ``exclude`` gives
    padded inputs zero weight (they never change the output).
    """
    share = logits.softmax(dim=2)
    pad = ~valid[:, None, None, :]
    if padding == "official":
        share = share.masked_fill(pad, 1.0 / logits.shape[2])
    else:
        share = share.masked_fill(pad, 0.0)
    return share / (share.sum(dim=-1, keepdim=True) + RENORM_EPS)


class SlotCompetitionAttention(nn.Module):
    """Multi-head cross-attention from K slots to L inputs, competition over the slots."""

    def __init__(self, slot_dim: int, input_dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.scale = head_dim**-0.5
        inner = heads * head_dim
        self.to_q = nn.Linear(slot_dim, inner, bias=False)
        self.to_k = nn.Linear(input_dim, inner, bias=False)
        self.to_v = nn.Linear(input_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, slot_dim), nn.Dropout(dropout))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, H·d) -> (B, H, n, d)."""
        return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, inputs: torch.Tensor, key_code: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (from inputs + position code) and values (from inputs), each (B, H, L, d)."""
        keys = self.to_k(inputs if key_code is None else inputs + key_code)
        return self._split(keys), self._split(self.to_v(inputs))

    def forward(
        self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, padding: Padding
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update (B, K, slot_dim) of normalised slots (B, K, slot_dim), and the weights (B, H, K, L)."""
        q = self._split(self.to_q(slots))
        weights = competition_weights((q @ keys.transpose(-1, -2)) * self.scale, valid, padding)
        out = (weights @ values).transpose(1, 2).flatten(2)  # (B, K, H·d)
        return self.to_out(out), weights


class AggregationBlock(nn.Module):
    """One iteration: pre-norm slot-competition attention + residual (or GRU), pre-norm GELU FFN + residual."""

    def __init__(
        self, slot_dim: int, input_dim: int, *, heads: int, head_dim: int, ff_mult: float, dropout: float,
        update: Literal["residual", "gru"],
    ) -> None:
        super().__init__()
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.attention = SlotCompetitionAttention(slot_dim, input_dim, heads, head_dim, dropout)
        self.gru = nn.GRUCell(slot_dim, slot_dim) if update == "gru" else None
        hidden = int(slot_dim * ff_mult)
        self.norm_ff = nn.LayerNorm(slot_dim)
        self.ff = nn.Sequential(nn.Linear(slot_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, slot_dim))

    def keys_values(self, inputs: torch.Tensor, key_code: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The position code is added after the input LayerNorm, to the keys only."""
        return self.attention.keys_values(self.norm_inputs(inputs), key_code)

    def forward(
        self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, padding: Padding
    ) -> tuple[torch.Tensor, torch.Tensor]:
        update, weights = self.attention(self.norm_slots(slots), keys, values, valid, padding)
        if self.gru is None:
            slots = slots + update
        else:
            slots = self.gru(update.flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
        return slots + self.ff(self.norm_ff(slots)), weights


class SetPredictionModule(nn.Module):
    """K slots refined by T iterations of :class:`AggregationBlock` (one shared block, or T), final LayerNorm.

    ``slot_init``: ``learned`` = K learned queries (released code, initialised N(0, 1)); ``gaussian`` =
    slots sampled from a learned N(μ, σ²) per item (the paper's slot attention).  In eval mode the
    Gaussian draw is one fixed, seeded (K, D) sample shared by every item, so that an item's embedding
    does not depend on randomness or on its batch.
    """

    def __init__(
        self, num_slots: int, slot_dim: int, input_dim: int, *, iterations: int, share_weights: bool, heads: int,
        head_dim: int, ff_mult: float, dropout: float, update: Literal["residual", "gru"],
        slot_init: Literal["learned", "gaussian"], eval_seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_slots, self.slot_dim, self.iterations = num_slots, slot_dim, iterations
        self.share_weights, self.slot_init, self.eval_seed = share_weights, slot_init, eval_seed
        if slot_init == "learned":
            self.slots = nn.Parameter(torch.randn(num_slots, slot_dim))
        else:
            self.slot_mu = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)))
            self.slot_log_sigma = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)))
        kwargs = dict(heads=heads, head_dim=head_dim, ff_mult=ff_mult, dropout=dropout, update=update)
        self.blocks = nn.ModuleList(
            AggregationBlock(slot_dim, input_dim, **kwargs) for _ in range(1 if share_weights else iterations)  # type: ignore[arg-type]
        )
        self.final_norm = nn.LayerNorm(slot_dim)

    def initial_slots(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """(B, K, D) starting slots."""
        if self.slot_init == "learned":
            return self.slots.to(like.dtype).expand(batch, -1, -1)
        if self.training:
            noise = torch.randn(batch, self.num_slots, self.slot_dim, device=like.device, dtype=like.dtype)
        else:
            gen = torch.Generator(device=like.device).manual_seed(self.eval_seed)
            noise = torch.randn(self.num_slots, self.slot_dim, generator=gen, device=like.device)
            noise = noise.to(like.dtype).expand(batch, -1, -1)
        return self.slot_mu + self.slot_log_sigma.exp() * noise

    def forward(
        self, inputs: torch.Tensor, valid: torch.Tensor, padding: Padding, key_code: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots (B, K, D) of inputs (B, L, I) with mask (B, L); last iteration's weights (B, H, K, L)."""
        slots = self.initial_slots(inputs.shape[0], inputs)
        keys = values = weights = None
        for t in range(self.iterations):
            block = self.blocks[0 if self.share_weights else t]
            if keys is None or not self.share_weights:  # a shared block sees the same keys every time
                keys, values = block.keys_values(inputs, key_code)
            slots, weights = block(slots, keys, values, valid, padding)
        assert weights is not None
        return self.final_norm(slots), weights
