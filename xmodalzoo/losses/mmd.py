"""Maximum mean discrepancy with the Laplacian-type kernel exp(−γ‖x − y‖₂) (PVSE, DivE)."""
from __future__ import annotations

import torch


def laplacian_kernel(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """exp(−γ‖x_i − y_j‖₂) for rows x (P, D) and y (Q, D) -> (P, Q); a zero distance has zero gradient.

    The distance is not squared (the kernel of the official PVSE and DivE code, ``exp(-γ·cdist)``).
    """
    sq = x.square().sum(1)[:, None] + y.square().sum(1)[None, :]
    d2 = (sq - 2 * x @ y.t()).clamp(min=0)
    # ‖x‖² + ‖y‖² − 2x·y is only accurate to a few ulps of ‖x‖² + ‖y‖², and the sqrt magnifies that
    # rounding (a point compared with itself would be 1e-4 away in float32): distances within it count
    # as 0, which also avoids sqrt's infinite slope at 0 (torch.cdist gives 0 gradient there too)
    eps = torch.finfo(d2.dtype).eps
    nonzero = d2 > 8 * eps * sq
    dist = torch.where(nonzero, d2.clamp(min=eps).sqrt(), torch.zeros_like(d2))
    return torch.exp(-gamma * dist)


def mmd(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Biased MMD² estimate mean k(x, x') − 2 mean k(x, y) + mean k(y, y') of rows x (P, D), y (Q, D).

    All pairs are averaged, self-pairs included (k(x, x) = 1), as in the official PVSE and DivE code.
    """
    return (
        laplacian_kernel(x, x, gamma).mean()
        - 2 * laplacian_kernel(x, y, gamma).mean()
        + laplacian_kernel(y, y, gamma).mean()
    )
