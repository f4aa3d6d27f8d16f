"""Equal-count uncertainty bins and their recall, against a hand-made case; the plot is a PNG."""
import math

import numpy as np
import pytest
import torch

from xmodalzoo.eval.uncertainty import (
    average_ranks, bin_indices, plot_uncertainty_bins, spearman, uncertainty_bins,
)


def test_bins_sort_by_uncertainty_and_count_recall():
    u = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    ranks = torch.tensor([12, 0, 3, 0, 0, 0])
    bins = uncertainty_bins(u, ranks, n_bins=3)
    # sorted: 0.1 (r 0), 0.2 (r 0) | 0.3 (r 0), 0.5 (r 3) | 0.7 (r 0), 0.9 (r 12)
    assert [b["count"] for b in bins] == [2, 2, 2]
    assert [x for b in bins for x in (b["low"], b["high"])] == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    assert [b["r1"] for b in bins] == [100.0, 50.0, 50.0]
    assert [b["r5"] for b in bins] == [100.0, 100.0, 50.0]
    assert [b["r10"] for b in bins] == [100.0, 100.0, 50.0]
    assert bins[1]["mean_uncertainty"] == pytest.approx(0.4)


def test_bin_indices_are_the_queries_of_each_bin():
    u = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.5])
    ranks = torch.tensor([12, 0, 3, 0, 0, 0, 1])
    idx = bin_indices(u, n_bins=3)
    assert [i.tolist() for i in idx] == [[1, 5, 3], [2, 6], [4, 0]]  # ties (0.5) keep the query order
    bins = uncertainty_bins(u, ranks, n_bins=3)
    assert [b["count"] for b in bins] == [len(i) for i in idx]
    assert [b["mean_uncertainty"] for b in bins] == pytest.approx([float(u[i].double().mean()) for i in idx])
    assert [len(i) for i in bin_indices(torch.tensor([1.0, 2.0]), n_bins=10)] == [1, 1]
    with pytest.raises(ValueError, match="NaN"):
        bin_indices(torch.tensor([1.0, math.nan]))


def test_uneven_and_tiny_inputs():
    bins = uncertainty_bins(np.arange(7.0), np.zeros(7, dtype=int), n_bins=3)
    assert sorted(b["count"] for b in bins) == [2, 2, 3] and sum(b["count"] for b in bins) == 7
    assert len(uncertainty_bins(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]), n_bins=10)) == 2
    with pytest.raises(ValueError, match="2 queries but ranks has 3"):
        uncertainty_bins(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="1-d"):
        uncertainty_bins(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="n_bins"):
        uncertainty_bins(torch.zeros(2), torch.zeros(2), n_bins=0)


def test_plot_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    bins = uncertainty_bins(torch.rand(50, generator=g), torch.randint(0, 5, (50,), generator=g), n_bins=5)
    out = plot_uncertainty_bins(bins, bins, tmp_path / "sub" / "u.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _brute_average_ranks(values: list[float]) -> list[float]:
    # rank = 1 + (#smaller) + (#equal others) / 2, straight from the definition
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2 for v in values]


def test_average_ranks_match_the_definition_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (40,), generator=g).double()
    assert average_ranks(x).tolist() == _brute_average_ranks(x.tolist())


def test_spearman_is_pearson_of_average_ranks() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 6, (30,), generator=g).double()
    y = x + torch.randint(0, 4, (30,), generator=g).double()
    rx = torch.tensor(_brute_average_ranks(x.tolist()), dtype=torch.float64)
    ry = torch.tensor(_brute_average_ranks(y.tolist()), dtype=torch.float64)
    ref = float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])
    assert spearman(x, y) == pytest.approx(ref, abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x.numpy(), y.numpy()).statistic, abs=1e-12)
    assert 0 < spearman(x, y) < 1
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6·2 / (4·15)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    with pytest.raises(ValueError, match="x has 2 values but y has 3"):
        spearman([1, 2], [1, 2, 3])
