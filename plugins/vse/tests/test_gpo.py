"""GPO: special cases (max, mean), padding invariance, a per-item loop reference, gradients."""
from __future__ import annotations

import torch

from xmodalzoo_vse.gpo import GPO, gpo_pool, sinusoidal_positions, sort_fragments


def random_mask(lengths: list[int], max_len: int, scatter: bool, gen: torch.Generator) -> torch.Tensor:
    """(B, max_len) mask with the given valid counts; valid slots at the front or scattered."""
    mask = torch.zeros(len(lengths), max_len, dtype=torch.bool)
    for b, n in enumerate(lengths):
        slots = torch.randperm(max_len, generator=gen)[:n] if scatter else torch.arange(n)
        mask[b, slots] = True
    return mask


def test_sort_fragments_puts_padding_last_as_zero() -> None:
    x = torch.tensor([[[1.0, -5.0], [3.0, 2.0], [-7.0, 9.0]]])
    mask = torch.tensor([[True, False, True]])
    ranked = sort_fragments(x, mask)
    assert torch.equal(ranked, torch.tensor([[[1.0, 9.0], [-7.0, -5.0], [0.0, 0.0]]]))


def test_one_hot_first_rank_is_max_pooling_and_uniform_is_mean_pooling() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 3, 5, 2]
    x = torch.randn(4, 5, 6, generator=gen)
    mask = random_mask(lengths, 5, scatter=True, gen=gen)
    n = torch.tensor(lengths, dtype=torch.float32)
    one_hot = torch.zeros(4, 5)
    one_hot[:, 0] = 1
    uniform = (torch.arange(5)[None, :] < n[:, None]).float() / n[:, None]
    for b, length in enumerate(lengths):
        valid = x[b][mask[b]]
        assert valid.shape[0] == length
        assert torch.allclose(gpo_pool(x, mask, one_hot)[b], valid.max(0).values)
        assert torch.allclose(gpo_pool(x, mask, uniform)[b], valid.mean(0), atol=1e-6)


def test_rank_weights_are_a_distribution_over_valid_ranks() -> None:
    torch.manual_seed(0)
    gpo = GPO()
    lengths = torch.tensor([4, 1, 7, 4, 0])
    w = gpo.rank_weights(lengths, 7)
    valid = torch.arange(7)[None, :] < lengths[:, None]
    assert torch.all(w[~valid] == 0)
    assert torch.allclose(w.sum(1), torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.equal(w[0], w[3])  # weights depend on the length only


def reference_gpo(gpo: GPO, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One item at a time, no padding: sort the valid fragments, run the GRU on n position codes."""
    out = []
    for b in range(x.shape[0]):
        valid = x[b][mask[b]]  # (n, D)
        n = valid.shape[0]
        ranked = valid.sort(dim=0, descending=True).values
        codes = sinusoidal_positions(n, gpo.pe_dim)[None]
        h, _ = gpo.gru(codes)
        h = (h[..., : gpo.hidden_dim] + h[..., gpo.hidden_dim :]) / 2
        theta = (gpo.score(h)[0, :, 0] / gpo.temperature).softmax(0)
        pooled = torch.zeros(x.shape[-1])
        for k in range(n):
            pooled = pooled + theta[k] * ranked[k]
        out.append(pooled)
    return torch.stack(out)


def test_gpo_matches_per_item_reference_in_values_and_gradients() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    gpo = GPO(pe_dim=8, hidden_dim=6)
    lengths = [3, 6, 1, 4, 6]
    x = torch.randn(5, 6, 4, generator=gen, requires_grad=True)
    mask = random_mask(lengths, 6, scatter=True, gen=gen)
    probe = torch.randn(5, 4, generator=gen)

    got = gpo(x, mask)
    params = list(gpo.parameters())
    g_got = torch.autograd.grad((got * probe).sum(), [x, *params])
    want = reference_gpo(gpo, x, mask)
    g_want = torch.autograd.grad((want * probe).sum(), [x, *params])

    assert torch.allclose(got, want, atol=1e-5)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.all(g_got[0][~mask] == 0)  # padding gets no gradient


def test_padding_gives_the_same_result_as_the_item_alone() -> None:
    torch.manual_seed(0)
    gpo = GPO()
    gen = torch.Generator().manual_seed(2)
    items = [torch.randn(n, 8, generator=gen) for n in (2, 5, 3)]
    padded = torch.full((3, 9, 8), 123.0)  # padding content must not matter
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for b, item in enumerate(items):
        padded[b, : len(item)] = item
        mask[b, : len(item)] = True
    batched = gpo(padded, mask)
    for b, item in enumerate(items):
        alone = gpo(item[None], torch.ones(1, len(item), dtype=torch.bool))
        assert torch.allclose(batched[b], alone[0], atol=1e-6)


def test_gradients_reach_every_gpo_parameter() -> None:
    torch.manual_seed(0)
    gpo = GPO()
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    gpo(x, mask).pow(2).sum().backward()
    for name, p in gpo.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
