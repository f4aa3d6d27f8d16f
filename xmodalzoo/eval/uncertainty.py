"""Recall per uncertainty bin: does retrieval get worse as a method's per-item uncertainty rises?

Generic over methods: it needs one uncertainty scalar per query (e.g. ``Method.uncertainty(emb)``,
the mean σ² of a Gaussian embedding) and each query's 0-based rank of its best positive.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

RECALL_KS = (1, 5, 10)


def _as_1d(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    if t.dim() != 1:
        raise ValueError(f"{name} must be one value per query (1-d), got shape {tuple(t.shape)}")
    return t


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``x`` (1-d), ties sharing the mean of the ranks they span (as in Spearman's ρ)."""
    x = _as_1d(x, "x").double()
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    # group equal values: each group's rank is the mean of its first and last 1-based position
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1
    pos = torch.arange(1, len(x) + 1, dtype=torch.float64)
    first = torch.zeros(int(group[-1]) + 1 if len(x) else 0, dtype=torch.float64).scatter_reduce(
        0, group, pos, "amin", include_self=False)
    last = torch.zeros_like(first).scatter_reduce(0, group, pos, "amax", include_self=False)
    ranks = torch.empty_like(pos)
    ranks[order] = ((first + last) / 2)[group]
    return ranks


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation ρ of two equally long 1-d sequences (ties get average ranks).

    NaN when either side is constant.
    """
    rx, ry = average_ranks(_as_1d(x, "x")), average_ranks(_as_1d(y, "y"))
    if rx.shape != ry.shape:
        raise ValueError(f"spearman: x has {rx.numel()} values but y has {ry.numel()}")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = (rx.square().sum() * ry.square().sum()).sqrt()
    return float(rx @ ry / denom) if denom > 0 else float("nan")


def bin_indices(uncertainty: Any, n_bins: int = 10) -> list[torch.Tensor]:
    """Query indices of each of ``n_bins`` equal-count bins by uncertainty, low to high (the split of
    :func:`uncertainty_bins`): sizes differ by at most one, ties keep the query order, and with fewer
    queries than bins there are as many bins as queries."""
    u = _as_1d(uncertainty, "uncertainty").double()
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if not torch.isfinite(u).all():
        raise ValueError("uncertainty contains NaN or infinite values")
    order = torch.argsort(u, stable=True)
    return [chunk for chunk in torch.tensor_split(order, min(n_bins, max(len(u), 1))) if len(chunk)]


def uncertainty_bins(uncertainty: torch.Tensor, ranks: torch.Tensor, n_bins: int = 10) -> list[dict[str, Any]]:
    """Split the queries into ``n_bins`` equal-count bins by uncertainty (low to high) and report each.

    ``ranks`` are 0-based ranks of each query's best positive.  Each bin is a JSON-ready dict:
    ``bin`` (0-based), ``low`` / ``high`` (uncertainty range), ``mean_uncertainty``, ``count``, and
    ``r1``, ``r5``, ``r10`` in percent.  The bins are those of :func:`bin_indices` (which gives their
    queries): sizes differ by at most one; ties in uncertainty keep the query order; with fewer
    queries than bins there are as many bins as queries.
    """
    u = _as_1d(uncertainty, "uncertainty").double()
    r = _as_1d(ranks, "ranks").long()
    if u.shape != r.shape:
        raise ValueError(f"uncertainty has {u.numel()} queries but ranks has {r.numel()}")
    bins = []
    for k, idx in enumerate(bin_indices(u, n_bins)):
        bu, br = u[idx], r[idx]
        row: dict[str, Any] = {
            "bin": k,
            "low": float(bu.min()),
            "high": float(bu.max()),
            "mean_uncertainty": float(bu.mean()),
            "count": int(len(idx)),
        }
        for kk in RECALL_KS:
            row[f"r{kk}"] = float((br < kk).double().mean() * 100)
        bins.append(row)
    return bins


def plot_uncertainty_bins(
    bins_i2t: Sequence[dict[str, Any]], bins_t2i: Sequence[dict[str, Any]], path: str | Path
) -> Path:
    """Write a PNG of R@1 per uncertainty bin for image→text and text→image queries; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for bins, label, marker in ((bins_i2t, "image → text", "o"), (bins_t2i, "text → image", "s")):
        if bins:
            ax.plot([b["bin"] + 1 for b in bins], [b["r1"] for b in bins], marker=marker, label=label)
    ax.set_xlabel("uncertainty bin (1 = least uncertain queries)")
    ax.set_ylabel("R@1 (%)")
    ax.set_title("Recall@1 by query uncertainty")
    # R@1 on ambiguous benchmarks can be a few percent: scale to the data, not to 100
    top = max((b["r1"] for bins in (bins_i2t, bins_t2i) for b in bins), default=0.0)
    ax.set_ylim(0, min(100.0, max(5.0, 1.15 * top)))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
