"""The public Python API: listing, inspecting and building registered components."""
from __future__ import annotations

from typing import Any

from .plugins import PluginStatus, discover, plugin_status
from .registry import KINDS, REGISTRY, Entry


def list_methods(filter: str | None = None) -> list[str]:
    """Names of the registered methods (glob ``filter`` optional)."""
    discover()
    return [e.name for e in REGISTRY.list("method", filter)]


def list_components(kind: str, filter: str | None = None) -> list[str]:
    """Names of the registered components of ``kind`` (glob ``filter`` optional)."""
    discover()
    return [e.name for e in REGISTRY.list(kind, filter)]


def plugins() -> list[PluginStatus]:
    """Every plugin found (core first): name, distribution, version, ok, error."""
    return plugin_status()


def info(name: str, kind: str | None = None) -> list[Entry]:
    """The registry entries called ``name`` (in ``kind`` only, when given)."""
    discover()
    if kind is not None:
        return [REGISTRY.get(kind, name)]
    found = REGISTRY.find(name)
    if not found:
        from .registry import RegistryError

        raise RegistryError(REGISTRY.unknown_message("method", name).replace("unknown method", "unknown component"))
    return found


def build_component(kind: str, cfg: Any, **context: Any) -> Any:
    """Build a registered component from its config (instance or mapping with ``type``)."""
    from .method import build

    return build(kind, cfg, **context)


__all__ = ["KINDS", "build_component", "info", "list_components", "list_methods", "plugins"]
