"""Registers the components the core ships, the same way a plugin does."""
from __future__ import annotations

from .registry import Registrar


def register(r: Registrar) -> None:
    """Core components: cosine, dot, triplet, linear head, encoders, tokenizers, datasets, samplers."""
    from . import data, encoders, heads, losses
    from .similarity.cosine import CosineConfig, build_cosine
    from .similarity.dot import DotConfig, build_dot

    r.add("similarity", "cosine", build_cosine, CosineConfig, accepts=["point"])
    r.add("similarity", "dot", build_dot, DotConfig, accepts=("point", "set"))
    losses.register_components(r)
    heads.register_components(r)
    encoders.register_components(r)
    data.register_components(r)
