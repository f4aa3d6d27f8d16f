"""xmodalzoo: a plugin-based model zoo for image–text cross-modal retrieval."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .api import (
    build_component,
    build_method,
    export_run,
    info,
    list_components,
    list_methods,
    list_pretrained,
    load,
    load_recipe,
    load_run,
    plugins,
    pretrained_info,
    push_to_hub,
    save_pretrained,
    validate_recipe,
)
from .version import __version__

if TYPE_CHECKING:
    from .search import Index


def __getattr__(name: str) -> object:
    """``zoo.Index`` is imported on first use (it needs torch; ``import xmodalzoo`` does not)."""
    if name == "Index":
        from .search import Index

        return Index
    raise AttributeError(f"module 'xmodalzoo' has no attribute {name!r}")


__all__ = [
    "Index", "__version__", "build_component", "build_method", "export_run", "info", "list_components", "list_methods", "list_pretrained", "load", "load_recipe", "load_run", "plugins", "pretrained_info", "push_to_hub", "save_pretrained",
    "validate_recipe",
]
