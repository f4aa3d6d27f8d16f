"""Datasets, samplers and batching."""
from .base import RetrievalDataset
from .batch import Batch, TextBatch


def register_components(r) -> None:  # type: ignore[no-untyped-def]
    """Datasets and samplers: filled in by the data modules."""
    from .coco import CocoDatasetConfig, build_coco
    from .cub import CubDatasetConfig, build_cub
    from .folder import JsonlDatasetConfig, build_jsonl
    from .karpathy import KarpathyDatasetConfig, build_karpathy
    from .precomp import PrecompDatasetConfig, build_precomp
    from .samplers import register_samplers

    r.add("dataset", "jsonl", build_jsonl, JsonlDatasetConfig)
    r.add("dataset", "karpathy", build_karpathy, KarpathyDatasetConfig)
    r.add("dataset", "coco", build_coco, CocoDatasetConfig)
    r.add("dataset", "precomp", build_precomp, PrecompDatasetConfig)
    r.add("dataset", "cub", build_cub, CubDatasetConfig)
    register_samplers(r)
    from .shapes import register as register_shapes; register_shapes(r)  # noqa: E702


__all__ = ["Batch", "RetrievalDataset", "TextBatch", "register_components"]
