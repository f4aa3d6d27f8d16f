"""Heads shipped with the core."""
from .linear import LinearHead, LinearHeadConfig, build_linear_head, pool


def register_components(r) -> None:  # type: ignore[no-untyped-def]
    r.add("head", "linear", build_linear_head, LinearHeadConfig, emits="point")


__all__ = ["LinearHead", "LinearHeadConfig", "build_linear_head", "pool", "register_components"]
