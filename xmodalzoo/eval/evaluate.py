"""The evaluation loop: encode once, then for each protocol fold stream the score blocks through
:func:`~xmodalzoo.eval.streaming.stream_fold_metrics` (every metric taken per block; the fold's score
matrix is never held).  :func:`fold_metrics` computes the same metrics from a given score matrix.

Results are a JSON-serialisable dict ``{protocol: {metric: value}, "meta": {...}}``; recalls,
R-Precision, mAP@R and PMRP are percentages, ranks are 1-based (ties: the lower gallery index ranks
first, see :mod:`xmodalzoo.eval.metrics`).  Scores are ``similarity(images, captions)``, read
row-wise for i2t and column-wise for t2i.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.base import RetrievalDataset
from ..embeddings import Embedding
from ..similarity.base import Similarity
from . import metrics as M
from .config import EvalConfig
from ..devices import resolve_device
from .encode import encode_captions, encode_images
from .streaming import stream_fold_metrics
from .summary import RECALL_KS, summarise_fold
from .protocols import Fold, check_caption_to_image, check_protocols, protocol_folds
from .reference import REFERENCE_KEY, reference_results


@dataclass
class RetrievalTargets:
    """What counts as a match: own image of each caption, plus optional exhaustive positives / labels.

    ``positives`` is (num_captions, num_images) bool; ``image_labels`` / ``caption_labels`` are
    multi-hot (N, C) for PMRP.
    """

    caption_to_image: np.ndarray
    num_images: int
    positives: torch.Tensor | None = None
    image_labels: torch.Tensor | None = None
    caption_labels: torch.Tensor | None = None

    @classmethod
    def from_data(cls, data: RetrievalDataset | np.ndarray | Sequence[int] | torch.Tensor, num_images: int) -> "RetrievalTargets":
        """From a dataset (with its optional positives/labels) or from a bare caption→image array."""
        if isinstance(data, RetrievalDataset):
            c2i, pos = data.caption_to_image, data.positives
            img_lab, cap_lab = data.image_labels, data.caption_labels
        else:
            c2i, pos, img_lab, cap_lab = data, None, None, None
        if isinstance(c2i, torch.Tensor):
            c2i = c2i.cpu().numpy()
        targets = cls(check_caption_to_image(c2i, num_images), num_images, pos, img_lab, cap_lab)
        targets.validate()
        return targets

    @property
    def num_captions(self) -> int:
        return int(len(self.caption_to_image))

    def validate(self) -> None:
        """Raise a clear error when shapes disagree or an image has no caption."""
        counts = np.bincount(self.caption_to_image, minlength=self.num_images)
        if (counts == 0).any():
            missing = np.flatnonzero(counts == 0)
            raise ValueError(
                f"{len(missing)} image(s) have no caption (first: {missing[:5].tolist()}); "
                "every image needs at least one caption for i2t ranks"
            )
        expected = (self.num_captions, self.num_images)
        if self.positives is not None and tuple(self.positives.shape) != expected:
            raise ValueError(f"positives has shape {tuple(self.positives.shape)}; expected (captions, images) = {expected}")
        if (self.image_labels is None) != (self.caption_labels is None):
            raise ValueError("PMRP needs both image_labels and caption_labels (only one is set)")
        if self.image_labels is not None and self.caption_labels is not None:
            if self.image_labels.shape[0] != self.num_images or self.caption_labels.shape[0] != self.num_captions:
                raise ValueError(
                    f"label rows ({self.image_labels.shape[0]} image, {self.caption_labels.shape[0]} caption) "
                    f"do not match {self.num_images} images and {self.num_captions} captions"
                )

    def subset(self, fold: Fold) -> "RetrievalTargets":
        """The targets of one fold, with images and captions renumbered from 0."""
        local = np.full(self.num_images, -1, dtype=np.int64)
        local[fold.image_index] = np.arange(fold.num_images)
        img = torch.as_tensor(fold.image_index)
        cap = torch.as_tensor(fold.caption_index)
        return RetrievalTargets(
            local[self.caption_to_image[fold.caption_index]],
            fold.num_images,
            None if self.positives is None else self.positives[cap][:, img],
            None if self.image_labels is None else self.image_labels[img],
            None if self.caption_labels is None else self.caption_labels[cap],
        )


def fold_metrics(
    scores: torch.Tensor, targets: RetrievalTargets, zetas: Sequence[int] = (0, 1, 2)
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Metrics of one fold from its (images, captions) score matrix, and the 1-based ranks per direction."""
    n_img, n_cap = scores.shape
    if (n_img, n_cap) != (targets.num_images, targets.num_captions):
        raise ValueError(
            f"scores {tuple(scores.shape)} do not match {targets.num_images} images × {targets.num_captions} captions"
        )
    device = scores.device
    c2i = torch.as_tensor(targets.caption_to_image, device=device)
    own = torch.arange(n_img, device=device)[:, None] == c2i[None, :]
    ranks = {"i2t": M.first_positive_ranks(scores, own), "t2i": M.single_positive_ranks(scores.t(), c2i)}
    pos = None if targets.positives is None else targets.positives.to(device).bool()
    labelled = targets.image_labels is not None and targets.caption_labels is not None and len(zetas) > 0
    img_lab, cap_lab = targets.image_labels, targets.caption_labels
    per_query: dict[str, dict[str, torch.Tensor]] = {}
    for direction, s, p, q_lab, g_lab in (
        ("i2t", scores, None if pos is None else pos.t(), img_lab, cap_lab),
        ("t2i", scores.t(), pos, cap_lab, img_lab),
    ):
        if p is None and not labelled:
            continue
        per_query[direction] = M.ranked_precision(
            s, positives=p, query_labels=q_lab, gallery_labels=g_lab, zetas=zetas if labelled else ()
        )
    out = summarise_fold(ranks, per_query, list(zetas) if labelled else [])
    return out, {k: v.cpu() for k, v in ranks.items()}


def _mean_over_folds(per_fold: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([f[k] for f in per_fold])) for k in per_fold[0]}


def evaluate_embeddings(
    sim: Similarity,
    image_emb: Embedding,
    caption_emb: Embedding,
    data: RetrievalDataset | np.ndarray | Sequence[int] | torch.Tensor,
    cfg: EvalConfig | None = None,
    *,
    protocols: Sequence[str] | None = None,
    return_ranks: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Evaluate precomputed embeddings (every image and caption of a split, in dataset order).

    ``data`` is the dataset (its ``positives`` and labels add R-Precision, mAP@R and PMRP) or just
    its caption→image array.  Protocols default to ``cfg.protocols``.  With ``return_ranks`` also
    returns ``{protocol: {"i2t", "t2i", "image_index", "caption_index"}}``: 1-based ranks per query
    (concatenated over folds) and the dataset index of each query.
    """
    cfg = cfg or EvalConfig()
    protocols = list(protocols if protocols is not None else cfg.protocols)
    if not protocols:
        raise ValueError("no evaluation protocol given")
    targets = RetrievalTargets.from_data(data, len(image_emb))
    if len(caption_emb) != targets.num_captions:
        raise ValueError(f"{len(caption_emb)} caption embeddings for {targets.num_captions} captions")
    check_protocols(protocols, targets.num_images, getattr(data, "split", None) or None)
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    results: dict[str, Any] = {}
    all_ranks: dict[str, dict[str, torch.Tensor]] = {}
    folds_per_protocol: dict[str, int] = {}
    for protocol in protocols:
        folds = protocol_folds(protocol, targets.caption_to_image, targets.num_images)
        folds_per_protocol[protocol] = len(folds)
        per_fold, fold_ranks = [], []
        for fold in folds:
            img = torch.as_tensor(fold.image_index)
            cap = torch.as_tensor(fold.caption_index)
            sub = targets.subset(fold)
            values, ranks = stream_fold_metrics(
                sim, image_emb[img], caption_emb[cap], sub.caption_to_image, positives=sub.positives,
                image_labels=sub.image_labels, caption_labels=sub.caption_labels, zetas=cfg.pmrp_zetas,
                max_bytes=cfg.max_bytes, device=device, seed=cfg.seed,
            )
            per_fold.append(values)
            fold_ranks.append((ranks, img, cap))
        results[protocol] = _mean_over_folds(per_fold)
        if return_ranks:
            all_ranks[protocol] = {
                "i2t": torch.cat([r["i2t"] for r, _, _ in fold_ranks]),
                "t2i": torch.cat([r["t2i"] for r, _, _ in fold_ranks]),
                "image_index": torch.cat([i for _, i, _ in fold_ranks]),
                "caption_index": torch.cat([c for _, _, c in fold_ranks]),
            }
    reference = reference_results(targets, protocols, cfg.pmrp_zetas)
    if reference is not None:  # exact ground truth: what chance and the oracle reach (eval/reference.py)
        results[REFERENCE_KEY] = reference
    results["meta"] = {
        "num_images": targets.num_images,
        "num_captions": targets.num_captions,
        "similarity": type(sim).__name__,
        "device": str(device),
        "folds": folds_per_protocol,
        "seconds": time.perf_counter() - start,
    }
    return (results, all_ranks) if return_ranks else results


def encode_dataset(
    method: nn.Module, dataset: RetrievalDataset, cfg: EvalConfig | None = None, *, progress: bool = True
) -> tuple[Embedding, Embedding]:
    """Every image and every caption of ``dataset`` encoded once, on ``cfg.device``, returned on the CPU."""
    cfg = cfg or EvalConfig()
    device = resolve_device(cfg.device)
    img = encode_images(method, dataset, cfg.batch_size, device, cfg.num_workers, progress=progress)
    cap = encode_captions(method, dataset, cfg.batch_size, device, cfg.num_workers, progress=progress)
    return img, cap


def evaluate(
    method: nn.Module,
    dataset: RetrievalDataset,
    cfg: EvalConfig | None = None,
    *,
    protocols: Sequence[str] | None = None,
    progress: bool = True,
    return_ranks: bool = False,
    embeddings: tuple[Embedding, Embedding] | None = None,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Encode every image and caption of ``dataset`` once with ``method`` and evaluate them.

    Encoding and scoring run on ``cfg.device``; the method's ``similarity`` scores the pairs.  The
    protocols are checked against the split's size before anything is encoded.  Pass
    ``embeddings=(images, captions)`` when this method has already encoded the dataset (e.g. to also
    read their uncertainty) to skip encoding.  Returns the results dict (see
    :func:`evaluate_embeddings`; ``meta`` adds ``encode_seconds`` — None when ``embeddings`` were
    passed in — and ``seconds``), plus the ranks when ``return_ranks``.
    """
    cfg = cfg or EvalConfig()
    check_protocols(protocols if protocols is not None else cfg.protocols, dataset.num_images, dataset.split or None)
    start = time.perf_counter()
    encode_seconds: float | None = None
    if embeddings is None:
        embeddings = encode_dataset(method, dataset, cfg, progress=progress)
        encode_seconds = time.perf_counter() - start
    img, cap = embeddings
    out = evaluate_embeddings(
        method.similarity, img, cap, dataset, cfg, protocols=protocols, return_ranks=return_ranks
    )
    results = out[0] if isinstance(out, tuple) else out
    results["meta"].update(
        score_seconds=results["meta"]["seconds"], encode_seconds=encode_seconds,
        seconds=time.perf_counter() - start,
        dataset=f"{dataset.name}/{dataset.split}" if dataset.name else "",
    )
    return out


__all__ = ["RECALL_KS", "RetrievalTargets", "encode_dataset", "evaluate", "evaluate_embeddings", "fold_metrics"]
