"""The component registry: kinds, entries, registration, lookup with helpful errors, building.

Every pluggable part of the zoo (encoders, heads, similarities, losses, methods, datasets, samplers,
batch modules, tokenizers, converters of official checkpoints) is an :class:`Entry` in one :class:`Registry`.  An entry pairs a name with
a factory, the pydantic config class that recipes validate against and the contract it declares.
A plugin adds entries through a :class:`Registrar` (all or nothing); finding plugins is
:mod:`xmodalzoo.plugins`' job.  :func:`resolve_config` types a config class by what is registered.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Callable, Mapping, Optional, Sequence, Union

from pydantic import AfterValidator, BaseModel, Field, create_model
from pydantic_core import PydanticCustomError

from .config import ComponentConfig, component_field, field_annotation, has_components, plain_field, typed_config
from .errors import RegistryError

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
    "tokenizer",
    "converter",
)

#: contract keywords of :meth:`Registrar.add`, and the kinds that may declare each
CONTRACT_KINDS: dict[str, tuple[str, ...]] = {
    "emits": ("head",),
    "accepts": ("similarity", "loss"),
    "similarities": ("loss",),
}


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
    #: declared contract, checked when a recipe is validated (see :mod:`xmodalzoo.contracts`):
    #: ``emits`` (heads: an embedding kind, or a callable cfg -> kind), ``accepts`` (similarities and
    #: losses: the embedding kinds they read), ``similarities`` (losses: the similarity types they need)
    contract: dict[str, Any] = field(default_factory=dict, compare=False)

    def build(self, cfg: BaseModel | dict[str, Any] | None = None, **context: Any) -> Any:
        """Validate ``cfg`` against this entry's config class and call the factory."""
        return self.factory(self.validate(cfg), **context)

    def validate(self, cfg: BaseModel | dict[str, Any] | None, registry: "Registry | None" = None) -> BaseModel:
        """``cfg`` as an instance of this entry's config class, typed by what is registered (its
        component fields hold config models, never plain mappings)."""
        model = resolve_config(self.config, registry)
        if isinstance(cfg, model):
            return cfg
        if cfg is None:
            cfg = {}
        if isinstance(cfg, BaseModel):
            cfg = cfg.model_dump()
        data = dict(cfg)
        data.setdefault("type", self.name)
        return model.model_validate(data)


#: where a pretrained entry's weights come from
SOURCE_KINDS = ("hf-hub", "official-url", "unpublished")


@dataclass(frozen=True)
class Metric:
    """One published result of a pretrained entry, with what it was measured on."""

    dataset: str  # e.g. "coco"
    protocol: str  # e.g. "coco1k", "coco5k", "full"
    metric: str  # e.g. "rsum", "i2t_r1"
    value: float
    #: who measured it: "paper" (the authors' table) or "xmodalzoo" (our evaluation of these weights)
    measured_by: str = "xmodalzoo"


@dataclass(frozen=True)
class PretrainedEntry:
    """A named set of weights, declared by a plugin as plain data (``Registrar.add_pretrained``).

    ``source`` is one of :data:`SOURCE_KINDS`: ``"hf-hub"`` (``repo_id`` holds a model folder in our
    format, at the pinned ``revision``), ``"official-url"`` (the authors' checkpoint at ``url``, with
    its ``sha256``, converted into a model folder on first load) or ``"unpublished"`` (no weights
    exist yet: ``recipe`` trains them).
    """

    name: str
    repo_id: str | None
    method: str
    plugin: str
    revision: str | None = None
    doc: str = ""
    #: the installed distribution of the plugin that registered it
    distribution: str = ""
    source: str = "hf-hub"
    url: str | None = None
    sha256: str | None = None
    #: the files of the entry (hf-hub: the repo files downloaded; official-url: the file names)
    files: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = ()
    license: str | None = None
    paper: str | None = None
    #: the recipe (path in the repository, e.g. "recipes/dive_coco.yaml") that trains these weights
    recipe: str | None = None

    @property
    def available(self) -> bool:
        """Whether weights can be downloaded (False for ``unpublished`` entries)."""
        return self.source != "unpublished"

    @property
    def location(self) -> str:
        """Where the weights are: ``org/repo@revision``, the URL, or ``(not published)``."""
        if self.source == "hf-hub":
            return f"{self.repo_id}@{self.revision}" if self.revision else str(self.repo_id)
        if self.source == "official-url":
            return str(self.url)
        return "(not published)"


@dataclass
class Registry:
    """Holds entries by kind; lookups fail with suggestions."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: plugin name -> error message, for plugins that failed to load (filled by plugins.py)
    failed_plugins: dict[str, str] = field(default_factory=dict)
    #: pretrained model name -> where its model folder is published
    pretrained: dict[str, PretrainedEntry] = field(default_factory=dict)
    #: plugin name -> how to cite the method(s) it provides (BibTeX; ``Registrar.cite``)
    citations: dict[str, str] = field(default_factory=dict)
    #: bumped on every change so resolved config classes can be cached
    version: int = 0
    #: called once before the first lookup to fill the registry (plugin discovery sets itself here)
    loader: Callable[[], None] | None = field(default=None, repr=False)

    def ensure_loaded(self) -> None:
        """Run :attr:`loader` once (it may look entries up itself: the second call is a no-op)."""
        loader, self.loader = self.loader, None
        if loader is not None:
            loader()

    def check_kind(self, kind: str) -> None:
        if kind not in self.entries:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(self.entries)}")

    def clear(self) -> None:
        """Forget every entry, pretrained name and failed plugin."""
        self.entries = {k: {} for k in KINDS}
        self.failed_plugins.clear()
        self.pretrained.clear()
        self.citations.clear()
        self.version += 1

    def add(self, entry: Entry) -> None:
        """Add one entry; a name already taken in the same kind is an error naming both owners."""
        self.check_kind(entry.kind)
        self.check_free(entry)
        self.entries[entry.kind][entry.name] = entry
        self.version += 1

    def check_free(self, entry: Entry) -> None:
        """Raise if ``entry``'s kind and name are taken, naming both plugins and their distributions."""
        existing = self.entries[entry.kind].get(entry.name)
        if existing is not None:
            raise RegistryError(
                f"{entry.kind} {entry.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"(distribution {existing.distribution}) and by plugin {entry.plugin!r} "
                f"(distribution {entry.distribution})"
            )

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
        self.citations.pop(plugin, None)
        self.version += 1

    def get(self, kind: str, name: str) -> Entry:
        """Return the entry, or raise listing what exists and the closest names."""
        self.ensure_loaded()
        self.check_kind(kind)
        try:
            return self.entries[kind][name]
        except KeyError:
            raise RegistryError(self.unknown_message(kind, name)) from None

    def build(self, kind: str, cfg: BaseModel | dict[str, Any], **context: Any) -> Any:
        """Build the component of ``kind`` that ``cfg`` names (a config model, or a mapping with
        ``type``): validate ``cfg`` against its config class and call its factory with ``context``."""
        entry = self.get(kind, type_name(cfg, kind))
        return entry.factory(entry.validate(cfg, self), **context)

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
        self.ensure_loaded()
        self.check_kind(kind)
        names = sorted(self.entries[kind])
        if filter:
            names = [n for n in names if fnmatch.fnmatchcase(n, filter)]
        return [self.entries[kind][n] for n in names]

    def find(self, name: str) -> list[Entry]:
        """All entries called ``name``, across kinds."""
        self.ensure_loaded()
        return [k[name] for k in self.entries.values() if name in k]


REGISTRY = Registry()


def type_name(cfg: Any, kind: str) -> str:
    """The registered name a config selects: its ``type`` (attribute or key)."""
    if isinstance(cfg, BaseModel) and getattr(cfg, "type", None) is not None:
        return str(cfg.type)  # type: ignore[attr-defined]
    if isinstance(cfg, dict) and "type" in cfg:
        return str(cfg["type"])
    raise RegistryError(f"a {kind} config needs a 'type' key, got {cfg!r}")


# ------------------------------------------------------------------------------------ registration


class Registrar:
    """Collects one plugin's registrations; :meth:`commit` adds them all or none."""

    def __init__(self, plugin: str, distribution: str) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.staged: list[Entry] = []
        self.staged_pretrained: list[PretrainedEntry] = []
        self.citation: str | None = None

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
        Leaving one out means "anything".
        """
        if kind not in KINDS:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise RegistryError(f"invalid component name {name!r}")
        if any(e.kind == kind and e.name == name for e in self.staged):
            raise RegistryError(f"plugin {self.plugin!r} registers {kind} {name!r} twice")
        contract = _contract(kind, name, emits=emits, accepts=accepts, similarities=similarities)
        if doc is None:
            doc = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        self.staged.append(Entry(kind, name, factory, typed_config(name, kind, config), self.plugin,
                                 self.distribution, doc, contract))

    def add_pretrained(self, name: str, repo_id: str | None = None, method: str = "", revision: str | None = None,
                       doc: str = "", *, source: str = "hf-hub", url: str | None = None, sha256: str | None = None,
                       files: Sequence[str] = (), metrics: Sequence[Mapping[str, Any] | Metric] = (),
                       license: str | None = None, paper: str | None = None, recipe: str | None = None) -> None:
        """Declare pretrained weights ``name`` (loadable with ``zoo.load(name)``), as plain data.

        ``source="hf-hub"``: ``repo_id`` holds a model folder (pin ``revision`` to a commit);
        ``"official-url"``: the authors' checkpoint at ``url`` with its ``sha256`` (converted on first
        load); ``"unpublished"``: no weights yet, ``recipe`` trains them.  ``metrics`` are mappings
        with ``dataset``, ``protocol``, ``metric``, ``value`` (and ``measured_by``: "paper" or "xmodalzoo").
        """
        if any(p.name == name for p in self.staged_pretrained):
            raise RegistryError(f"plugin {self.plugin!r} registers pretrained {name!r} twice")
        where = f"plugin {self.plugin!r}, pretrained {name!r}"
        if source not in SOURCE_KINDS:
            raise RegistryError(f"{where}: source {source!r} is not one of {', '.join(SOURCE_KINDS)}")
        if not method:
            raise RegistryError(f"{where}: method= is required (the registered method the weights are for)")
        if source == "hf-hub" and not repo_id:
            raise RegistryError(f"{where}: an hf-hub entry needs repo_id='org/name'")
        if source == "official-url" and not (url and sha256):
            raise RegistryError(f"{where}: an official-url entry needs url= and sha256= (the file's checksum)")
        if source == "unpublished" and not recipe:
            raise RegistryError(f"{where}: an unpublished entry needs recipe= (the recipe that trains it)")
        try:
            parsed = tuple(m if isinstance(m, Metric) else Metric(**m) for m in metrics)
        except TypeError as exc:
            raise RegistryError(f"{where}: a metric needs dataset, protocol, metric and value ({exc})") from None
        self.staged_pretrained.append(PretrainedEntry(
            name, repo_id, method, self.plugin, revision, doc, distribution=self.distribution, source=source,
            url=url, sha256=sha256, files=tuple(files), metrics=parsed, license=license, paper=paper, recipe=recipe,
        ))

    def cite(self, bibtex: str) -> None:
        """How to cite the method(s) of this plugin (BibTeX); model cards of its models include it."""
        self.citation = bibtex.strip()

    def commit(self, registry: Registry) -> None:
        """Add every staged entry, or none of them if any name is taken."""
        for e in self.staged:
            registry.check_free(e)
        for p in self.staged_pretrained:
            registry.check_pretrained(p)
        for e in self.staged:
            registry.add(e)
        for p in self.staged_pretrained:
            registry.add_pretrained(p)
        if self.citation:
            registry.citations[self.plugin] = self.citation


def _contract(kind: str, name: str, **declared: Any) -> dict[str, Any]:
    """The contract keywords given (not None), checked for the kinds that may declare them."""
    contract: dict[str, Any] = {}
    for key, value in declared.items():
        if value is None:
            continue
        if kind not in CONTRACT_KINDS[key]:
            raise RegistryError(f"{kind} {name!r}: {key}= is for {' and '.join(CONTRACT_KINDS[key])} components")
        if key == "emits":
            if not (callable(value) or (isinstance(value, str) and value)):
                raise RegistryError(f"head {name!r}: emits= takes an embedding kind or a callable cfg -> kind")
            contract[key] = value
        else:
            if isinstance(value, str) or not value or not all(isinstance(v, str) and v for v in value):
                raise RegistryError(f"{kind} {name!r}: {key}= takes a non-empty list of names, got {value!r}")
            contract[key] = tuple(value)
    return contract


# ------------------------------------------------------------------------ configs typed by the registry

_resolved: dict[tuple[type, int, int], type] = {}


def resolve_config(cls: type[BaseModel], registry: Registry | None = None) -> type[BaseModel]:
    """A subclass of ``cls`` whose ``Component[...]`` fields are discriminated unions over the
    configs registered in ``registry`` (default: :data:`REGISTRY`) for their kind.

    The result depends on what is registered now; it is cached until the registry changes.
    """
    registry = REGISTRY if registry is None else registry
    key = (cls, id(registry), registry.version)
    if key in _resolved:
        return _resolved[key]
    overrides: dict[str, Any] = {}
    for fname, finfo in cls.model_fields.items():
        ann = field_annotation(cls, fname)
        found = component_field(ann)
        if found is not None:
            kind, shape = found
            union = union_for(kind, registry)
            typed = {"one": union, "list": list[union], "optional": Optional[union]}[shape]
            overrides[fname] = (typed, plain_field(finfo))
        elif isinstance(ann, type) and issubclass(ann, BaseModel) and has_components(ann):
            overrides[fname] = (resolve_config(ann, registry), finfo)
    resolved = (create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **overrides)
                if overrides else cls)
    _resolved[key] = resolved
    return resolved


def union_for(kind: str, registry: Registry | None = None) -> Any:
    """Discriminated union over every registered config of ``kind`` (resolved recursively)."""
    registry = REGISTRY if registry is None else registry
    classes = tuple(resolve_config(e.config, registry) for e in registry.list(kind))
    if not classes:
        # nothing registered yet: any value is an unknown component (with the registry's message)
        return Annotated[dict[str, Any], AfterValidator(partial(_reject_unregistered, kind, registry))]
    if len(classes) == 1:
        return Annotated[Union[classes[0], classes[0]], Field(discriminator="type")]
    return Annotated[Union[classes], Field(discriminator="type")]


def _reject_unregistered(kind: str, registry: Registry, value: dict[str, Any]) -> dict[str, Any]:
    name = str(value.get("type", "")) if isinstance(value, dict) else ""
    raise PydanticCustomError("unknown_component", "{message}", {"message": registry.unknown_message(kind, name)})


__all__ = [
    "CONTRACT_KINDS", "KINDS", "REGISTRY", "Entry", "PretrainedEntry", "Registrar", "Registry", "RegistryError",
    "resolve_config", "type_name", "union_for",
]
