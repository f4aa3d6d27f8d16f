"""Reductions for similarity epilogues whose every score must not depend on its block's shape."""
from __future__ import annotations

import torch


def ordered_sum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over a short axis ``dim`` of ``x`` as a fixed sequence of elementwise adds (a new tensor).

    torch's reductions may change their summation order with the tensor's shape; adding slice by
    slice gives every element the same rounding whatever the block shape, so a chunked result equals
    the unchunked one bit for bit.  Over a short innermost axis (K = 4 set elements, say) it is also
    several times faster than ``x.sum(dim)``, whose reduction kernel is tuned for long rows.
    """
    slices = x.unbind(dim)
    acc = slices[0].clone()
    for s in slices[1:]:
        acc.add_(s)
    return acc
