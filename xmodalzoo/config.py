"""Config building blocks shared by every component: the base class and the ``Component`` field.

Component configs are plain pydantic models.  A field typed ``Component["head"]`` holds the config
of another registered component; before the registry is consulted it accepts a plain mapping with a
``type`` key.  :func:`xmodalzoo.registry.resolve_config` turns such fields into discriminated unions
over every registered config of that kind (so recipes and the JSON schema know all installed
plugins); this module only describes the fields and knows nothing of what is registered.
"""
from __future__ import annotations

from functools import lru_cache
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo


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

#: how a field holds component configs: one, a list of them, or one or None
Shape = Literal["one", "list", "optional"]


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


def field_annotation(cls: type[BaseModel], fname: str) -> Any:
    """The annotation of field ``fname`` with its ``Annotated`` metadata put back."""
    finfo = cls.model_fields[fname]
    ann = finfo.annotation
    if finfo.metadata:
        ann = Annotated[(ann, *finfo.metadata)]
    return ann


def component_field(annotation: Any) -> tuple[str, Shape] | None:
    """``(kind, shape)`` when ``annotation`` holds component configs (``Component[k]``,
    ``list[Component[k]]`` or ``Component[k] | None``), else None."""
    kind = component_kind(annotation)
    if kind is not None:
        return kind, "one"
    args = get_args(annotation)
    if get_origin(annotation) is list and args and component_kind(args[0]) is not None:
        return component_kind(args[0]), "list"  # type: ignore[return-value]
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1 and len(args) == 2 and component_kind(members[0]) is not None:
            return component_kind(members[0]), "optional"  # type: ignore[return-value]
    return None


@lru_cache(maxsize=None)
def has_components(cls: type[BaseModel]) -> bool:
    """Whether ``cls`` or a model nested in it has a component field."""
    for fname in cls.model_fields:
        ann = field_annotation(cls, fname)
        if component_field(ann) is not None:
            return True
        if isinstance(ann, type) and issubclass(ann, BaseModel) and has_components(ann):
            return True
    return False


def plain_field(finfo: FieldInfo) -> Any:
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
