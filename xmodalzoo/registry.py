"""The component registry: kinds, entries, listing and lookup with helpful errors.

Every pluggable part of the zoo (encoders, heads, similarities, losses, methods, datasets, samplers)
is an :class:`Entry` in one :class:`Registry`.  An entry pairs a name with a factory and the pydantic
config class that recipes validate against.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

KINDS: tuple[str, ...] = (
    "image_encoder",
    "text_encoder",
    "head",
    "similarity",
    "loss",
    "method",
    "dataset",
    "sampler",
    "batch_module",
)


class RegistryError(KeyError):
    """Raised for unknown kinds or names, and for conflicting registrations."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type[BaseModel]
    plugin: str
    distribution: str
    doc: str = ""
    #: declared contract, checked when a recipe is validated: ``emits`` (heads: "point" | "set" |
    #: "gaussian", or a callable cfg -> kind), ``accepts`` (similarities and losses: the embedding
    #: kinds they read), ``similarities`` (losses: the similarity types they need, None = any)
    contract: dict[str, Any] = field(default_factory=dict, compare=False)

    def build(self, cfg: BaseModel | dict[str, Any] | None = None, **context: Any) -> Any:
        """Validate ``cfg`` against this entry's config class and call the factory."""
        cfg = self.validate(cfg)
        return self.factory(cfg, **context)

    def validate(self, cfg: BaseModel | dict[str, Any] | None) -> BaseModel:
        """Return ``cfg`` as an instance of this entry's config class."""
        if isinstance(cfg, self.config):
            return cfg
        if cfg is None:
            cfg = {}
        if isinstance(cfg, BaseModel):
            cfg = cfg.model_dump()
        data = dict(cfg)
        data.setdefault("type", self.name)
        return self.config.model_validate(data)


@dataclass(frozen=True)
class PretrainedEntry:
    """A named set of published weights: a Hugging Face Hub repository holding a model folder."""

    name: str
    repo_id: str
    method: str
    plugin: str
    revision: str | None = None
    doc: str = ""
    #: the installed distribution of the plugin that registered it
    distribution: str = ""


@dataclass
class Registry:
    """Holds entries by kind; lookups fail with suggestions."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: plugin name -> error message, for plugins that failed to load (filled by plugins.py)
    failed_plugins: dict[str, str] = field(default_factory=dict)
    #: pretrained model name -> where its model folder is published
    pretrained: dict[str, PretrainedEntry] = field(default_factory=dict)
    #: bumped on every change so resolved config classes can be cached
    version: int = 0

    def check_kind(self, kind: str) -> None:
        if kind not in self.entries:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(self.entries)}")

    def add(self, entry: Entry) -> None:
        """Add one entry; a name already taken in the same kind is an error naming both owners."""
        self.check_kind(entry.kind)
        existing = self.entries[entry.kind].get(entry.name)
        if existing is not None:
            raise RegistryError(
                f"{entry.kind} {entry.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"(distribution {existing.distribution}) and by plugin {entry.plugin!r} "
                f"(distribution {entry.distribution})"
            )
        self.entries[entry.kind][entry.name] = entry
        self.version += 1

    def check_pretrained(self, entry: PretrainedEntry) -> None:
        """Raise if ``entry``'s name is taken, naming both plugins and their distributions."""
        existing = self.pretrained.get(entry.name)
        if existing is not None:
            raise RegistryError(
                f"pretrained {entry.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"(distribution {existing.distribution or '?'}) and by plugin {entry.plugin!r} "
                f"(distribution {entry.distribution or '?'})"
            )

    def add_pretrained(self, entry: PretrainedEntry) -> None:
        """Add one pretrained entry; a name already taken is an error naming both owners."""
        self.check_pretrained(entry)
        self.pretrained[entry.name] = entry
        self.version += 1

    def remove_plugin(self, plugin: str) -> None:
        for kind in self.entries.values():
            for name in [n for n, e in kind.items() if e.plugin == plugin]:
                del kind[name]
        for name in [n for n, e in self.pretrained.items() if e.plugin == plugin]:
            del self.pretrained[name]
        self.version += 1

    def get(self, kind: str, name: str) -> Entry:
        """Return the entry, or raise listing what exists and the closest names."""
        self.check_kind(kind)
        try:
            return self.entries[kind][name]
        except KeyError:
            raise RegistryError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: str) -> str:
        available = sorted(self.entries[kind])
        msg = f"unknown {kind} {name!r}."
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        if close:
            msg += f" Did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" Available: {', '.join(available) if available else '(none)'}."
        if self.failed_plugins:
            failed = ", ".join(f"{p} ({err})" for p, err in self.failed_plugins.items())
            msg += f" Plugins that failed to load (their components are missing): {failed}."
        return msg

    def list(self, kind: str, filter: str | None = None) -> list[Entry]:
        """Entries of ``kind`` sorted by name, optionally filtered by a glob pattern."""
        self.check_kind(kind)
        names = sorted(self.entries[kind])
        if filter:
            names = [n for n in names if fnmatch.fnmatchcase(n, filter)]
        return [self.entries[kind][n] for n in names]

    def find(self, name: str) -> list[Entry]:
        """All entries called ``name``, across kinds."""
        return [k[name] for k in self.entries.values() if name in k]


REGISTRY = Registry()
