"""HREM's pooling of an item's fragments: MaxK (mean of the top-k values per dimension), masked mean,
and the released code's L2 normalisation x / (‖x‖ + eps).

Fragments are (B, L, D) with a (B, L) bool mask (True = valid); valid positions need not be
contiguous (region drop removes arbitrary regions).
"""
from __future__ import annotations

import torch


def maxk_pool(x: torch.Tensor, mask: torch.Tensor, k: int = 2, carryover: bool = False) -> torch.Tensor:
    """(B, D): per dimension, the mean of the ``k`` largest values over each item's valid fragments.

    An item with n < k valid fragments averages its n values (k_i = min(k, n)); an item without
    valid fragments gives 0.  ``carryover`` reproduces the released code's loop, which overwrites k
    with min(k, n) item by item, so after an item with n < k every LATER item of the batch is pooled
    with that smaller k (k_i = min over j <= i of min(k, n_j)); it makes an embedding depend on its
    batch neighbours, hence off by default.
    """
    if x.dim() != 3 or mask.shape != x.shape[:2]:
        raise ValueError(f"expected fragments (B, L, D) and mask (B, L); got {tuple(x.shape)} and {tuple(mask.shape)}")
    if k < 1:
        raise ValueError(f"MaxK needs k >= 1, got {k}")
    mask = mask.bool()
    per_item = mask.sum(1).clamp(max=k)
    if carryover and len(per_item):
        # the released loop never lets k reach 0 through an empty item: min(k, 0) would fail there
        per_item = torch.cummin(per_item.clamp(min=1), dim=0).values
    kk = min(k, x.shape[1])
    top = x.masked_fill(~mask[..., None], float("-inf")).topk(kk, dim=1).values  # (B, kk, D)
    used = torch.arange(kk, device=x.device)[None, :] < per_item[:, None]  # (B, kk)
    top = top.masked_fill(~used[..., None] | ~torch.isfinite(top), 0.0)
    return top.sum(1) / per_item.clamp(min=1)[:, None].to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, D) mean of each item's valid fragments (0 for an item without any)."""
    m = mask.bool()[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def l2_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / (‖x‖₂ + eps) along the last dimension (the released code's ``l2norm``)."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)
