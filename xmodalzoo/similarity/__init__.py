"""Similarities and the chunked similarity engine."""
from .base import Similarity
from .cosine import Cosine
from .dot import Dot
from .engine import DEFAULT_MAX_BYTES, ChunkPlan, plan_chunks, plan_topk, similarity_matrix, topk
from .ranking import argsort_desc, positive_ranks, topk_desc

__all__ = [
    "Similarity", "Cosine", "Dot", "DEFAULT_MAX_BYTES", "ChunkPlan", "plan_chunks", "plan_topk", "similarity_matrix",
    "topk", "argsort_desc", "positive_ranks", "topk_desc",
]
