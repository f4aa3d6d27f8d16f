"""Plugin discovery through the ``xmodalzoo.plugins`` entry-point group.

A plugin is any installed distribution that declares, in its packaging metadata::

    [project.entry-points."xmodalzoo.plugins"]
    mymethod = "my_package:register"

``register`` receives a :class:`~xmodalzoo.registry.Registrar` and adds its components to it.
Registration is all or nothing: the components are staged and only committed to the registry when
``register`` returns without error and none of the names clash.  A failing plugin is recorded (see :func:`plugin_status`)
and reported with a warning; ``XMODALZOO_STRICT_PLUGINS=1`` makes the first failure fatal.
"""
from __future__ import annotations

import os
import traceback
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import PluginLoadError, RegistryError
from .registry import REGISTRY, Registrar
from .version import __version__

GROUP = "xmodalzoo.plugins"
CORE_PLUGIN = "xmodalzoo"


@dataclass(frozen=True)
class PluginStatus:
    """What happened when one plugin was loaded."""

    name: str
    distribution: str
    version: str
    ok: bool
    error: str = ""
    #: registry entries it added (all kinds)
    components: int = 0
    #: pretrained models it published (``Registrar.add_pretrained``)
    pretrained: int = 0


_status: dict[str, PluginStatus] = {}
_loaded = False


def strict_mode() -> bool:
    return os.environ.get("XMODALZOO_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def load_plugin(
    name: str, distribution: str, version: str, register: Callable[[Registrar], None] | None,
    loader: Callable[[], Callable[[Registrar], None]] | None = None,
) -> PluginStatus:
    """Import (via ``loader``) and run one plugin's ``register``; record the outcome."""
    registrar = Registrar(name, distribution)
    try:
        if register is None:
            assert loader is not None
            register = loader()
        if not callable(register):
            raise TypeError(f"entry point must name a callable register(registrar), got {type(register).__name__}")
        register(registrar)
        registrar.commit(REGISTRY)
        status = PluginStatus(name, distribution, version, True, components=len(registrar.staged),
                              pretrained=len(registrar.staged_pretrained))
    except Exception as exc:  # a broken plugin must not take the zoo down
        err = f"{type(exc).__name__}: {exc}"
        status = PluginStatus(name, distribution, version, False, err)
        REGISTRY.failed_plugins[name] = err
        _status[name] = status
        if strict_mode():
            raise PluginLoadError(
                f"plugin {name!r} (distribution {distribution}) failed to load: {err}\n"
                + "".join(traceback.format_exception(exc))
            ) from exc
        warnings.warn(f"xmodalzoo plugin {name!r} ({distribution}) failed to load: {err}", stacklevel=2)
        return status
    _status[name] = status
    return status


def discover(force: bool = False) -> None:
    """Register the core components, then every plugin in the entry-point group (once)."""
    global _loaded
    if _loaded and not force:
        return
    _loaded = True
    if force:
        REGISTRY.clear()
        _status.clear()
    from .builtins import register as register_core

    load_plugin(CORE_PLUGIN, "xmodalzoo", __version__, register_core)
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if ep.name in _status:
            prev = _status[ep.name]
            err = f"plugin name {ep.name!r} is declared by two distributions: {prev.distribution} and {dist}"
            load_plugin(ep.name + f"@{dist}", dist, version, None, loader=_raiser(err))
            continue
        load_plugin(ep.name, dist, version, None, loader=ep.load)


def _raiser(message: str) -> Callable[[], Any]:
    def fail() -> Any:
        raise RegistryError(message)

    return fail


def plugin_status() -> list[PluginStatus]:
    """Every plugin seen, core first, with its distribution, version and outcome."""
    discover()
    return list(_status.values())


# the registry fills itself on its first lookup: nobody has to remember to call discover() first
REGISTRY.loader = discover
