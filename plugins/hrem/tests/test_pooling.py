"""MaxK pooling, masked mean and the x / (‖x‖ + eps) normalisation against brute-force loops (float64),
with and without the released code's k carry-over."""
from __future__ import annotations

import torch

from xmodalzoo_hrem.pooling import l2_normalize, masked_mean, maxk_pool


def reference_maxk(x: torch.Tensor, mask: torch.Tensor, k: int, carryover: bool) -> torch.Tensor:
    """Per item and dimension: sort the valid values, average the top k_i (the released loop when carryover)."""
    out = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64)
    running_k = k
    for i in range(x.shape[0]):
        valid = [j for j in range(x.shape[1]) if mask[i, j]]
        if carryover:
            running_k = min(running_k, max(len(valid), 1))
            k_i = running_k
        else:
            k_i = min(k, len(valid))
        for d in range(x.shape[2]):
            values = sorted((float(x[i, j, d]) for j in valid), reverse=True)[:k_i]
            out[i, d] = sum(values) / len(values) if values else 0.0
    return out


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 3, generator=gen, dtype=torch.float64)
    mask = torch.tensor([
        [1, 1, 1, 1, 1],
        [1, 0, 1, 0, 1],  # non-contiguous valid fragments (region drop)
        [0, 0, 1, 0, 0],  # a single fragment: k_i = 1
        [1, 1, 0, 1, 0],
        [0, 0, 0, 0, 0],  # no fragment at all: 0
        [1, 1, 1, 0, 0],
    ], dtype=torch.bool)
    return x, mask


def test_maxk_is_the_mean_of_the_top_k_valid_values_per_dimension() -> None:
    x, mask = batch()
    for k in (1, 2, 3, 7):
        torch.testing.assert_close(maxk_pool(x, mask, k), reference_maxk(x, mask, k, carryover=False))


def test_maxk_carryover_reproduces_the_released_loop() -> None:
    x, mask = batch()
    quirk = maxk_pool(x, mask, 2, carryover=True)
    torch.testing.assert_close(quirk, reference_maxk(x, mask, 2, carryover=True))
    clean = maxk_pool(x, mask, 2)
    # items before the single-fragment item agree; every later item with >= 2 fragments is pooled with k = 1
    torch.testing.assert_close(quirk[:3], clean[:3])
    assert not torch.allclose(quirk[3], clean[3]) and not torch.allclose(quirk[5], clean[5])
    torch.testing.assert_close(quirk[5], x[5, :3].max(0).values)
    # without a short item the two agree
    full = torch.ones(6, 5, dtype=torch.bool)
    torch.testing.assert_close(maxk_pool(x, full, 2, carryover=True), maxk_pool(x, full, 2))


def test_masked_mean_and_normalisation() -> None:
    x, mask = batch()
    expected = torch.stack([x[i][mask[i]].mean(0) if mask[i].any() else torch.zeros(3, dtype=x.dtype)
                            for i in range(6)])
    torch.testing.assert_close(masked_mean(x, mask), expected)
    v = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(l2_normalize(v), torch.tensor([[3 / (5 + 1e-8), 4 / (5 + 1e-8)], [0.0, 0.0]],
                                                             dtype=torch.float64))
