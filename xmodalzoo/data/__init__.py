"""Datasets, samplers and batching."""
from .base import RetrievalDataset
from .batch import Batch, TextBatch


def register_components(r) -> None:  # type: ignore[no-untyped-def]
    """Datasets and samplers: filled in by the data modules."""


__all__ = ["Batch", "RetrievalDataset", "TextBatch", "register_components"]
