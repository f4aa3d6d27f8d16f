"""Registers the components the core ships, the same way a plugin does."""
from __future__ import annotations

from .registry import Registrar


def register(r: Registrar) -> None:
    """Core components: cosine, triplet, linear head, encoders, tokenizers, datasets, samplers."""
    from . import data, encoders, heads, losses
    from .similarity.cosine import CosineConfig, build_cosine

    r.add("similarity", "cosine", build_cosine, CosineConfig, accepts=["point"])
    losses.register_components(r)
    heads.register_components(r)
    encoders.register_components(r)
    data.register_components(r)
