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


def uncertainty_bins(uncertainty: torch.Tensor, ranks: torch.Tensor, n_bins: int = 10) -> list[dict[str, Any]]:
    """Split the queries into ``n_bins`` equal-count bins by uncertainty (low to high) and report each.

    ``ranks`` are 0-based ranks of each query's best positive.  Each bin is a JSON-ready dict:
    ``bin`` (0-based), ``low`` / ``high`` (uncertainty range), ``mean_uncertainty``, ``count``, and
    ``r1``, ``r5``, ``r10`` in percent.  Bin sizes differ by at most one; ties in uncertainty keep the
    query order; with fewer queries than bins there are as many bins as queries.
    """
    u = _as_1d(uncertainty, "uncertainty").double()
    r = _as_1d(ranks, "ranks").long()
    if u.shape != r.shape:
        raise ValueError(f"uncertainty has {u.numel()} queries but ranks has {r.numel()}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if not torch.isfinite(u).all():
        raise ValueError("uncertainty contains NaN or infinite values")
    order = torch.argsort(u, stable=True)
    bins = []
    for k, idx in enumerate(chunk for chunk in torch.tensor_split(order, min(n_bins, max(len(u), 1))) if len(chunk)):
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
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
