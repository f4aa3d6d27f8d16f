"""Evaluation: retrieval metrics, protocols (full / COCO 1K / COCO 5K), encoding and the eval loop."""
from .config import EvalConfig
from .encode import encode_captions, encode_images
from .evaluate import RetrievalTargets, encode_dataset, evaluate, evaluate_embeddings, fold_metrics
from .metrics import (
    first_positive_ranks, hamming_distances, nan_mean_percent, pmrp, r_precision_map_at_r, ranked_precision,
    recall_summary, single_positive_ranks, stable_topk_indices,
)
from .protocols import PROTOCOLS, Fold, protocol_folds
from .streaming import stream_fold_metrics
from .report import results_table, write_results

__all__ = [
    "EvalConfig", "Fold", "PROTOCOLS", "RetrievalTargets", "encode_captions", "encode_dataset", "encode_images", "evaluate",
    "evaluate_embeddings", "first_positive_ranks", "fold_metrics", "hamming_distances", "nan_mean_percent",
    "pmrp", "protocol_folds", "r_precision_map_at_r", "ranked_precision", "recall_summary",
    "results_table", "single_positive_ranks", "stable_topk_indices", "stream_fold_metrics", "write_results",
]
