"""Config building blocks shared by every component: the base class and the ``Component`` field.

Component configs are plain pydantic models.  A field typed ``Component["head"]`` holds the config
of another registered component; before the registry is resolved it accepts a plain mapping with a
``type`` key, and :func:`resolve_config` turns it into a discriminated union over every registered
config of that kind (so recipes and the JSON schema know all installed plugins).
"""
from __future__ import annotations

from functools import lru_cache, partial
from types import UnionType
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError


class ComponentConfig(BaseModel):
    """Base class for every config: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


class ComponentKind:
    """Marker in ``Annotated`` metadata: this field holds a config of registry kind ``kind``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"ComponentKind({self.kind!r})"


class _ComponentFactory:
    def __getitem__(self, kind: str) -> Any:
        return Annotated[Union[dict[str, Any], BaseModel], ComponentKind(kind)]


#: ``Component["head"]``: a field holding the config of any registered head.
Component = _ComponentFactory()


def component_kind(annotation: Any) -> str | None:
    """The registry kind of a ``Component[...]`` annotation, or None."""
    if get_origin(annotation) is Annotated:
        for meta in get_args(annotation)[1:]:
            if isinstance(meta, ComponentKind):
                return meta.kind
    return None


def typed_config(name: str, kind: str, config: type[BaseModel]) -> type[BaseModel]:
    """Subclass ``config`` with a ``type: Literal[name]`` discriminator field."""
    title = "".join(part.capitalize() for part in f"{kind}_{name}".replace("-", "_").split("_"))
    return create_model(
        title,
        __base__=config,
        __module__=config.__module__,
        type=(Literal[name], Field(default=name, description=f"{kind} type")),
    )


def union_for(kind: str, registry: Any = None) -> Any:
    """Discriminated union over every registered config of ``kind`` (resolved recursively)."""
    from .registry import REGISTRY

    registry = registry or REGISTRY
    classes = tuple(resolve_config(e.config) for e in registry.list(kind))
    if not classes:
        # nothing registered yet: any value is an unknown component (with the registry's message)
        return Annotated[dict[str, Any], AfterValidator(partial(_reject_unregistered, kind, registry))]
    if len(classes) == 1:
        return Annotated[Union[classes[0], classes[0]], Field(discriminator="type")]
    return Annotated[Union[classes], Field(discriminator="type")]


def _reject_unregistered(kind: str, registry: Any, value: dict[str, Any]) -> dict[str, Any]:
    name = str(value.get("type", "")) if isinstance(value, dict) else ""
    raise PydanticCustomError("unknown_component", "{message}", {"message": registry.unknown_message(kind, name)})


def _optional_component_kind(annotation: Any) -> str | None:
    """The kind of a ``Component[...] | None`` annotation, or None."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return component_kind(args[0])
    return None


_resolve_cache: dict[tuple[type, int], type] = {}


def resolve_config(cls: type[BaseModel]) -> type[BaseModel]:
    """A subclass of ``cls`` whose ``Component[...]`` fields are discriminated unions.

    The result depends on what is registered now; it is cached until the registry changes.
    """
    from .registry import REGISTRY

    key = (cls, REGISTRY.version)
    if key in _resolve_cache:
        return _resolve_cache[key]
    overrides: dict[str, Any] = {}
    for fname, finfo in cls.model_fields.items():
        ann = _field_annotation(cls, fname)
        kind = component_kind(ann)
        if kind is not None:
            overrides[fname] = (union_for(kind), _plain_field(finfo))
        elif get_origin(ann) is list and component_kind(get_args(ann)[0]) is not None:
            inner = component_kind(get_args(ann)[0])
            overrides[fname] = (list[union_for(inner)], _plain_field(finfo))
        elif _optional_component_kind(ann) is not None:
            overrides[fname] = (Optional[union_for(_optional_component_kind(ann))], _plain_field(finfo))
        elif isinstance(ann, type) and issubclass(ann, BaseModel) and _has_components(ann):
            overrides[fname] = (resolve_config(ann), finfo)
    if not overrides:
        resolved = cls
    else:
        resolved = create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **overrides)
    _resolve_cache[key] = resolved
    return resolved


def _plain_field(finfo: Any) -> Any:
    """A fresh ``Field`` with ``finfo``'s default and docs only.

    Passing ``finfo`` itself to ``create_model`` would keep its old annotation and drop the new
    union's ``discriminator``.
    """
    kwargs = {k: getattr(finfo, k) for k in ("description", "title", "examples", "json_schema_extra", "alias")
              if getattr(finfo, k) is not None}
    if finfo.default_factory is not None:
        kwargs["default_factory"] = finfo.default_factory
    elif not finfo.is_required():
        kwargs["default"] = finfo.default
    return Field(**kwargs)


def _field_annotation(cls: type[BaseModel], fname: str) -> Any:
    finfo = cls.model_fields[fname]
    ann = finfo.annotation
    if finfo.metadata:
        ann = Annotated[(ann, *finfo.metadata)]
    return ann


@lru_cache(maxsize=None)
def _has_components(cls: type[BaseModel]) -> bool:
    for fname in cls.model_fields:
        ann = _field_annotation(cls, fname)
        if component_kind(ann) is not None:
            return True
        if get_origin(ann) is list and component_kind(get_args(ann)[0]) is not None:
            return True
        if _optional_component_kind(ann) is not None:
            return True
        if isinstance(ann, type) and issubclass(ann, BaseModel) and _has_components(ann):
            return True
    return False
