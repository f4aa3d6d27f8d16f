"""DivE's 1-D sinusoidal position code, added to the keys of the text set-prediction module."""
from __future__ import annotations

import math

import torch

#: added to the length before scaling, as in the released code (positions 1..n map into (0, 2π))
LENGTH_EPS = 1e-6


def sine_position_code(lengths: torch.Tensor, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(B, width, dim) codes of positions 1..width, scaled by each row's length ``lengths`` (B,).

    θ_p = p / (n + 1e-6) · 2π for position p = 1..width of a row of length n; channel 2j holds
    sin(θ_p / T^(2j/dim)) and channel 2j + 1 holds cos(θ_p / T^(2j/dim)) (sin/cos interleaved, T =
    ``temperature``).  Positions past a row's length get θ > 2π (they are padding).
    """
    p = torch.arange(1, width + 1, device=lengths.device, dtype=torch.float32)
    theta = p[None, :] / (lengths.to(torch.float32)[:, None] + LENGTH_EPS) * (2 * math.pi)  # (B, width)
    channel = torch.arange(dim, device=lengths.device)
    freq = temperature ** (2 * torch.div(channel, 2, rounding_mode="floor").to(torch.float32) / dim)  # (dim,)
    angle = theta[..., None] / freq  # (B, width, dim)
    return torch.where(channel % 2 == 0, angle.sin(), angle.cos())
