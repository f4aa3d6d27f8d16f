"""Reference rows of a results table: what chance gives, and the best any model can reach.

Only for splits with exact ground truth (a dataset with ``positives``, e.g. ``shapes``), where
many captions truly match many images, so that "R@1 = 20" can be read against its ceiling:

* **chance**: the expected metrics when every ranking of the gallery is equally likely (random
  scores);
* **oracle**: the expected metrics of a model that ranks every true match of a query first and the
  rest after it, each group in random order (ties broken at random).

Both are *exact expectations* over those random rankings (not one random draw), computed with the
definitions of :mod:`xmodalzoo.eval.metrics` and :func:`xmodalzoo.eval.evaluate.fold_metrics`: R@K,
median and mean rank of the first *own* item (an image's own captions, a caption's own image),
R-Precision and mAP@R against the positives, PMRP against label Hamming distances, RSUM and the
mean recalls ``ar``/``ari`` — the same keys, averaged over a protocol's folds the same way.

With ``n`` own items placed uniformly at random among the first ``Q`` places (chance: ``Q`` = the
gallery size ``M``; oracle: ``Q`` = the query's number of positives, own items among them), the
first one is ranked after ``r`` with probability ``Π_{j<n} (Q − r − j) / (Q − j)`` (0 once
``r > Q − n``) and its expected rank is ``(Q + 1) / (n + 1)``.  A query with ``R`` positives gets, by
chance, R-Precision ``R / M`` and mAP@R ``(H_R + (R − H_R)(R − 1)/(M − 1)) / M`` (``H_R`` the
harmonic number); the oracle gets 1 for both.  PMRP with ``R_z`` label matches, ``a`` of them among
the ``Q`` positives: chance ``R_z / M``; oracle ``a / Q`` when ``R_z ≤ Q``, else
``(a + (R_z − Q)(R_z − a)/(M − Q)) / R_z``.  The median rank is that of the pooled rank
distribution of all queries (the median a large split converges to).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from . import metrics as M
from .protocols import protocol_folds

RECALL_KS = (1, 5, 10)
#: the key of the reference section in a results dict, and its rows
REFERENCE_KEY = "reference"
ROWS = ("chance", "oracle")
_LABEL_ROWS = 1024  # query rows per chunk of Hamming distances


def first_after(pool: np.ndarray, own: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(first own item ranked after place ``r``) per query, ``own`` items uniformly among the first
    ``pool`` places; broadcasts ``pool``/``own`` (queries) against ``r``."""
    pool, own, r = np.asarray(pool, np.float64), np.asarray(own, np.int64), np.asarray(r, np.float64)
    out = np.ones(np.broadcast(pool, r).shape)
    for j in range(int(own.max(initial=0))):
        factor = np.clip((pool - r - j) / np.maximum(pool - j, 1), 0.0, 1.0)
        out = out * np.where(own > j, factor, 1.0)
    return out


def rank_summary(pool: np.ndarray, own: np.ndarray) -> dict[str, float]:
    """Expected ``r1``, ``r5``, ``r10`` (percent), ``medr`` and ``meanr`` of the first own item."""
    pool, own = np.asarray(pool, np.float64), np.asarray(own, np.int64)
    out = {f"r{k}": float(100.0 * np.mean(1.0 - first_after(pool, own, np.float64(k)))) for k in RECALL_KS}
    lo, hi = 1, int(pool.max())  # the smallest r whose pooled P(rank <= r) reaches 1/2
    while lo < hi:
        mid = (lo + hi) // 2
        if np.mean(1.0 - first_after(pool, own, np.float64(mid))) >= 0.5:
            hi = mid
        else:
            lo = mid + 1
    out["medr"] = float(lo)
    out["meanr"] = float(np.mean((pool + 1) / (own + 1)))
    return out


def chance_map_at_r(num_pos: np.ndarray, gallery: int) -> np.ndarray:
    """Expected AP@R of a random ranking of ``gallery`` items with ``num_pos`` positives (NaN if none)."""
    r = np.asarray(num_pos, np.float64)
    harmonic = np.array([math.fsum(1.0 / i for i in range(1, int(k) + 1)) for k in r])
    ap = (harmonic + (r - harmonic) * (r - 1) / max(gallery - 1, 1)) / gallery
    return np.where(r > 0, ap, np.nan)


def _percent(values: np.ndarray) -> float:
    return M.nan_mean_percent(torch.as_tensor(values, dtype=torch.float64))


def _label_counts(q_lab: torch.Tensor, g_lab: torch.Tensor, pos: torch.Tensor | None,
                  zetas: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per ζ: each query's number of label matches (Hamming distance ≤ ζ) and how many of them are positives."""
    total = {z: [] for z in zetas}
    among = {z: [] for z in zetas}
    for r in range(0, q_lab.shape[0], _LABEL_ROWS):
        dist = M.hamming_distances(q_lab[r : r + _LABEL_ROWS], g_lab)
        p = None if pos is None else pos[r : r + _LABEL_ROWS]
        for z in zetas:
            match = dist <= z
            total[z].append(match.sum(1))
            among[z].append((match & p).sum(1) if p is not None else torch.zeros(match.shape[0], dtype=torch.long))
    return {z: (torch.cat(total[z]).numpy(), torch.cat(among[z]).numpy()) for z in zetas}


def direction_reference(own: np.ndarray, pos: torch.Tensor, q_lab: torch.Tensor | None, g_lab: torch.Tensor | None,
                        zetas: Sequence[int], direction: str) -> dict[str, dict[str, float]]:
    """Chance and oracle metrics of one direction: ``own`` own items per query, ``pos`` the (queries,
    gallery) positives, optional multi-hot labels of queries and gallery."""
    gallery = pos.shape[1]
    num_pos = pos.sum(1).numpy()
    rows: dict[str, dict[str, float]] = {}
    for name, pool in (("chance", np.full(len(own), gallery)), ("oracle", num_pos)):
        rows[name] = {f"{direction}_{k}": v for k, v in rank_summary(pool, own).items()}
    has_pos = np.where(num_pos > 0, 1.0, np.nan)
    rows["chance"][f"r_precision_{direction}"] = _percent(has_pos * num_pos / gallery)
    rows["chance"][f"map_at_r_{direction}"] = _percent(chance_map_at_r(num_pos, gallery))
    rows["oracle"][f"r_precision_{direction}"] = _percent(has_pos)
    rows["oracle"][f"map_at_r_{direction}"] = _percent(has_pos)
    if q_lab is not None and g_lab is not None and zetas:
        per_zeta: dict[str, dict[int, float]] = {"chance": {}, "oracle": {}}
        for z, (r_z, a) in _label_counts(q_lab, g_lab, pos, zetas).items():
            r_z, a = r_z.astype(np.float64), a.astype(np.float64)
            q = num_pos.astype(np.float64)
            valid = np.where(r_z > 0, 1.0, np.nan)
            per_zeta["chance"][z] = _percent(valid * r_z / gallery)
            hits = np.where(r_z <= q, r_z * a / np.maximum(q, 1),
                            a + (r_z - q) * (r_z - a) / np.maximum(gallery - q, 1))
            per_zeta["oracle"][z] = _percent(valid * hits / np.maximum(r_z, 1))
        for name, values in per_zeta.items():
            rows[name][f"pmrp_{direction}"] = float(np.mean(list(values.values())))
            rows[name].update({f"pmrp_{direction}_z{z}": v for z, v in values.items()})
    return rows


def fold_reference(targets: Any, zetas: Sequence[int] = (0, 1, 2)) -> dict[str, dict[str, float]] | None:
    """``{"chance": metrics, "oracle": metrics}`` of one fold's targets
    (:class:`~xmodalzoo.eval.evaluate.RetrievalTargets`); None without exact positives, or when a
    caption's own image is not among its positives (then the ground truth is not exact)."""
    if targets.positives is None:
        return None
    pos = targets.positives.cpu().bool()  # (captions, images)
    c2i = torch.as_tensor(targets.caption_to_image, dtype=torch.long)
    captions = torch.arange(targets.num_captions)
    if not bool(pos[captions, c2i].all()):
        return None
    own_per_image = np.bincount(targets.caption_to_image, minlength=targets.num_images)
    labelled = targets.image_labels is not None and targets.caption_labels is not None
    img_lab = targets.image_labels.cpu() if labelled else None
    cap_lab = targets.caption_labels.cpu() if labelled else None
    i2t = direction_reference(own_per_image, pos.t(), img_lab, cap_lab, zetas, "i2t")
    t2i = direction_reference(np.ones(targets.num_captions, np.int64), pos, cap_lab, img_lab, zetas, "t2i")
    out = {}
    for name in ROWS:
        row = {**i2t[name], **t2i[name]}
        row["rsum"] = sum(row[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in RECALL_KS)
        row["ar"] = float(np.mean([row[f"i2t_r{k}"] for k in RECALL_KS]))
        row["ari"] = float(np.mean([row[f"t2i_r{k}"] for k in RECALL_KS]))
        out[name] = row
    return out


def reference_results(targets: Any, protocols: Sequence[str],
                      zetas: Sequence[int] = (0, 1, 2)) -> dict[str, dict[str, dict[str, float]]] | None:
    """``{"chance": {protocol: metrics}, "oracle": {protocol: metrics}}``, each protocol averaged over
    its folds as the results are; None when the split has no exact ground truth."""
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in ROWS}
    for protocol in protocols:
        per_fold = []
        for fold in protocol_folds(protocol, targets.caption_to_image, targets.num_images):
            ref = fold_reference(targets.subset(fold), zetas)
            if ref is None:
                return None
            per_fold.append(ref)
        for name in ROWS:
            rows = [f[name] for f in per_fold]
            out[name][protocol] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return out


__all__ = ["REFERENCE_KEY", "ROWS", "chance_map_at_r", "first_after", "fold_reference", "rank_summary",
           "reference_results"]
