"""One fold's metric dict from its ranks and per-query precision values (shared by both evaluators)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import metrics as M

RECALL_KS = (1, 5, 10)


def summarise_fold(
    ranks: dict[str, torch.Tensor], per_query: dict[str, dict[str, torch.Tensor]], zetas: Sequence[int]
) -> dict[str, float]:
    """R@K, medr, meanr, rsum, ar/ari from 1-based ``ranks`` {"i2t": (images,), "t2i": (captions,)};
    R-Precision, mAP@R and PMRP (mean over ζ and per ζ) from ``per_query[direction]``, whose keys are
    ``r_precision`` / ``map_at_r`` / ``pmrp_z{ζ}`` (fractions per query, NaN = no positive)."""
    out: dict[str, float] = {}
    for direction in ("i2t", "t2i"):
        for key, value in M.recall_summary(ranks[direction], RECALL_KS).items():
            out[f"{direction}_{key}"] = value
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in RECALL_KS)
    # per-direction mean recall, as VSE∞'s evaluation reports it: ar (i2t) and ari (t2i)
    out["ar"] = float(np.mean([out[f"i2t_r{k}"] for k in RECALL_KS]))
    out["ari"] = float(np.mean([out[f"t2i_r{k}"] for k in RECALL_KS]))
    for direction in ("i2t", "t2i"):
        values = per_query.get(direction, {})
        if "r_precision" in values:
            out[f"r_precision_{direction}"] = M.nan_mean_percent(values["r_precision"])
            out[f"map_at_r_{direction}"] = M.nan_mean_percent(values["map_at_r"])
        if zetas and f"pmrp_z{zetas[0]}" in values:
            per_zeta = {z: M.nan_mean_percent(values[f"pmrp_z{z}"]) for z in zetas}
            out[f"pmrp_{direction}"] = float(np.mean(list(per_zeta.values())))
            out.update({f"pmrp_{direction}_z{z}": v for z, v in per_zeta.items()})
    return out
