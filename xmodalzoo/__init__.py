"""xmodalzoo: a plugin-based model zoo for image–text cross-modal retrieval."""
from __future__ import annotations

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

__all__ = [
    "__version__", "build_component", "build_method", "export_run", "info", "load", "list_components", "list_methods", "list_pretrained",
    "load_recipe", "load_run", "plugins", "pretrained_info", "push_to_hub", "save_pretrained",
    "validate_recipe",
]
