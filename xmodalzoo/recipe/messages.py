"""Readable validation messages for recipes: one line per problem, with "did you mean" hints.

Pydantic locations name discriminator tags and union members (``method.vse.image_head.linear.k``);
the messages here show the path as it is written in the YAML file (``method.image_head.k``).
"""
from __future__ import annotations

import difflib
from types import UnionType
from typing import Annotated, Any, Iterable, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..registry import REGISTRY


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> list[str]:
    """One message per problem of ``exc`` (raised validating ``model``), each prefixed by ``source``."""
    grouped: dict[tuple[Any, ...], list[str]] = {}
    for err in exc.errors(include_url=False):
        where = _locate(model, err["loc"])
        message = _message(err, where)
        grouped.setdefault(tuple(where.path), [])
        if message not in grouped[tuple(where.path)]:
            grouped[tuple(where.path)].append(message)
    lines = []
    for path, messages in grouped.items():
        # several messages at one place come from the members of a plain union: any one would do
        text = messages[0] if len(messages) == 1 else "; or ".join(messages)
        lines.append(f"{source}: {format_path(path)}: {text}" if path else f"{source}: {text}")
    return lines


def format_path(path: Iterable[str | int]) -> str:
    """``("train", "param_groups", 0, "lr_mult")`` -> ``train.param_groups.0.lr_mult``."""
    return ".".join(str(p) for p in path)


def describe_value(value: Any) -> str:
    """A few words for the kind of a YAML value: ``a list``, ``a string``, ``nothing``."""
    names = {list: "a list", dict: "a mapping", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "nothing" if value is None else names.get(type(value), type(value).__name__)


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for close matches of ``name`` among ``choices``, else ``""``."""
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class _Where:
    """Where an error sits: the user-facing path, the model owning its last key, the type there."""

    def __init__(self) -> None:
        self.path: list[str | int] = []
        self.owner: type[BaseModel] | None = None
        self.annotation: Any = None


def _locate(model: type[BaseModel], loc: tuple[str | int, ...]) -> _Where:
    """Walk ``loc`` through the type structure of ``model``, dropping tags and union-member names."""
    where = _Where()
    node: Any = model
    for part in loc:
        node = strip_annotated(node)
        members = union_members(node)
        if members is not None:
            tags = {t: m for m in members if (t := type_tag(m)) is not None}
            if part in tags:  # a discriminator tag: not in the YAML
                node = tags[part]
                continue
            if isinstance(part, str) and get_origin(node) in (Union, UnionType):
                node = None  # a plain union's member name, e.g. 'int' or 'function-after[...]'
                continue
        where.path.append(part)
        if isinstance(node, type) and issubclass(node, BaseModel):
            where.owner = node
            node = _field_type(node, part) if part in node.model_fields else None
        elif get_origin(node) in (list, tuple, set, frozenset) and isinstance(part, int):
            args = [a for a in get_args(node) if a is not Ellipsis]
            node = args[min(part, len(args) - 1)] if args else None
        elif get_origin(node) is dict:
            node = get_args(node)[1] if get_args(node) else None
        else:
            node = None
    where.annotation = node
    return where


def _message(err: Any, where: _Where) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(where.path[-1]) if where.path else ""
        fields = sorted(where.owner.model_fields) if where.owner is not None else []
        hint = suggest(key, fields)
        if not hint and fields:
            hint = f" Valid keys: {', '.join(fields)}."
        return f"unknown key {key!r}.{hint}"
    if kind == "union_tag_invalid":
        return _unknown_type_message(str(ctx.get("tag", "")), _tags(where.annotation))
    if kind == "union_tag_not_found":
        tags = _tags(where.annotation)
        component = _kind_of(tags)
        what = f"the {component} to use" if component else "which kind to use"
        return f"missing 'type' ({what}); one of: {', '.join(sorted(tags)) or '(none registered)'}."
    return err["msg"]


def _unknown_type_message(tag: str, tags: list[str]) -> str:
    component = _kind_of(tags)
    if component is not None:
        return REGISTRY.unknown_message(component, tag)
    return f"unknown type {tag!r}.{suggest(tag, tags)} Available: {', '.join(sorted(tags))}."


def _kind_of(tags: list[str]) -> str | None:
    """The registry kind whose names are exactly ``tags`` (the members of a resolved union)."""
    for kind, entries in REGISTRY.entries.items():
        if entries and set(entries) == set(tags):
            return kind
    return None


def _tags(annotation: Any) -> list[str]:
    members = union_members(strip_annotated(annotation)) or []
    return [t for m in members if (t := type_tag(m)) is not None]


def type_tag(cls: Any) -> str | None:
    """The value of the ``type: Literal[name]`` field of a registered config class, else None."""
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or "type" not in cls.model_fields:
        return None
    args = get_args(cls.model_fields["type"].annotation)
    return args[0] if get_origin(cls.model_fields["type"].annotation) is Literal and len(args) == 1 else None


def strip_annotated(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` wrappers and without ``| None``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):  # Optional[X] validates as X (no member name)
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return strip_annotated(args[0])
    return annotation


def union_members(annotation: Any) -> list[Any] | None:
    """The members of a union annotation (a tagged config class counts as a one-member union)."""
    if get_origin(annotation) in (Union, UnionType):
        return [strip_annotated(a) for a in get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and type_tag(annotation):
        return [annotation]  # a one-member discriminated union collapses to its member
    return None


def _field_type(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].annotation
