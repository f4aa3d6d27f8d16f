"""Plugin discovery through the ``xmodalzoo.plugins`` entry-point group.

A plugin is any installed distribution that declares, in its packaging metadata::

    [project.entry-points."xmodalzoo.plugins"]
    mymethod = "my_package:register"

``register`` receives a :class:`Registrar` and adds its components to it.  Registration is all or
nothing: the components are staged and only committed to the registry when ``register`` returns
without error and none of the names clash.  A failing plugin is recorded (see :func:`plugin_status`)
and reported with a warning; ``XMODALZOO_STRICT_PLUGINS=1`` makes the first failure fatal.
"""
from __future__ import annotations

import os
import traceback
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from .config import ComponentConfig, typed_config
from .registry import KINDS, REGISTRY, Entry, PretrainedEntry, Registry, RegistryError

GROUP = "xmodalzoo.plugins"
CORE_PLUGIN = "xmodalzoo"


class PluginLoadError(RuntimeError):
    """A plugin failed to import or register (raised only in strict mode)."""


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


class Registrar:
    """Collects one plugin's registrations; see :meth:`add`."""

    def __init__(self, plugin: str, distribution: str) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.staged: list[Entry] = []
        self.staged_pretrained: list[PretrainedEntry] = []

    def add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        config: type[BaseModel] = ComponentConfig,
        doc: str | None = None,
        *,
        emits: str | Callable[[Any], str] | None = None,
        accepts: Sequence[str] | None = None,
        similarities: Sequence[str] | None = None,
    ) -> None:
        """Register ``factory`` as ``kind`` ``name``; ``factory(cfg, **context)`` builds it.

        ``config`` is the pydantic class of its options (a ``type`` field is added for you);
        ``doc`` defaults to the first line of the factory's docstring.  The contract keywords are
        checked when a recipe is validated: ``emits`` (a head's embedding kind, ``"point"``,
        ``"set"`` or ``"gaussian"``, or a callable ``cfg -> kind``), ``accepts`` (the embedding
        kinds a similarity or loss reads) and ``similarities`` (the similarity types a loss needs).
        """
        contract: dict[str, Any] = {}
        if emits is not None:
            contract["emits"] = emits
        if accepts is not None:
            contract["accepts"] = tuple(accepts)
        if similarities is not None:
            contract["similarities"] = tuple(similarities)
        if kind not in KINDS:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise RegistryError(f"invalid component name {name!r}")
        if any(e.kind == kind and e.name == name for e in self.staged):
            raise RegistryError(f"plugin {self.plugin!r} registers {kind} {name!r} twice")
        if doc is None:
            doc = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        self.staged.append(
            Entry(kind, name, factory, typed_config(name, kind, config), self.plugin, self.distribution, doc,
                  contract)
        )

    def add_pretrained(self, name: str, repo_id: str, method: str, revision: str | None = None,
                       doc: str = "") -> None:
        """Publish pretrained weights ``name`` (loadable with ``zoo.load(name)``) held at a Hub repo."""
        if any(p.name == name for p in self.staged_pretrained):
            raise RegistryError(f"plugin {self.plugin!r} registers pretrained {name!r} twice")
        self.staged_pretrained.append(
            PretrainedEntry(name, repo_id, method, self.plugin, revision, doc, distribution=self.distribution)
        )

    def commit(self, registry: Registry) -> None:
        """Add every staged entry, or none of them if any name is taken."""
        for e in self.staged:
            existing = registry.entries[e.kind].get(e.name)
            if existing is not None:
                raise RegistryError(
                    f"{e.kind} {e.name!r} is registered twice: by plugin {existing.plugin!r} "
                    f"(distribution {existing.distribution}) and by plugin {e.plugin!r} "
                    f"(distribution {e.distribution})"
                )
        for p in self.staged_pretrained:
            registry.check_pretrained(p)
        for e in self.staged:
            registry.add(e)
        for p in self.staged_pretrained:
            registry.add_pretrained(p)


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
        REGISTRY.entries = {k: {} for k in KINDS}
        REGISTRY.failed_plugins.clear()
        REGISTRY.pretrained.clear()
        REGISTRY.version += 1
        _status.clear()
    from . import __version__
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
