"""The Recipe model: what one YAML recipe holds, typed against everything registered."""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel, Field, ValidationError

from ..config import Component, ComponentConfig, resolve_config
from ..eval.config import EvalConfig
from ..train.config import TrainConfig
from .errors import RecipeError, describe_value, format_validation_error, strip_annotated, type_tag, union_members

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Recipe(ComponentConfig):
    """A full experiment: the data, the method, how to train it and how to evaluate it."""

    name: str | None = Field(None, description="run name (defaults to the recipe file's stem)")
    description: str = Field("", description="free text")
    seed: int = Field(0, description="seed of every random generator")
    output_dir: str = Field("runs", description="folder that receives one run directory per run")
    data: Component["dataset"] = Field(description="the dataset (its 'type' picks a registered dataset)")
    method: Component["method"] = Field(description="the method (its 'type' picks a registered method)")
    train: TrainConfig = Field(default_factory=dict, description="training options")  # type: ignore[arg-type]
    eval: EvalConfig = Field(default_factory=dict, description="evaluation options")  # type: ignore[arg-type]


def recipe_model() -> type[Recipe]:
    """The Recipe class with every component section typed by what is registered now."""
    from ..plugins import discover

    discover()
    return resolve_config(Recipe)  # type: ignore[return-value]


def validate_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate recipe ``data``; problems raise :class:`RecipeError` with lines prefixed by ``source``."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping at the top level (data:, method:, ...), "
                          f"got {describe_value(data)}")
    model = recipe_model()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, model, source)) from None


def section_default(data: dict[str, Any], path: Sequence[str | int]) -> Any:
    """The default value of the recipe section at ``path`` given the (partial) recipe ``data``.

    Lets ``--set method.image_head.pooling=max`` start from the method's default head (with its
    ``type``) when the recipe does not spell out ``image_head``.  None where unknown.
    """
    node: Any = recipe_model()
    current: Any = data
    value: Any = None
    for part in path:
        node = strip_annotated(node)
        members = union_members(node)
        if members is not None:
            tags = {type_tag(m): m for m in members}
            node = tags.get(current.get("type")) if isinstance(current, dict) else None
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return None
        finfo = node.model_fields[part]
        value = finfo.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        node = finfo.annotation
        current = current.get(part) if isinstance(current, dict) and part in current else value
    return value


def recipe_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of recipes with every installed plugin, for editors and tooling."""
    from .loader import EXTENDS_KEY

    schema = recipe_model().model_json_schema()
    _require_discriminators(schema)
    # `extends:` is read (and removed) by the loader before validation, so the model has no such
    # field; recipe files may still carry it at the top level, and then may leave the required
    # sections (data, method) to their bases
    name = {"type": "string", "minLength": 1}
    schema.setdefault("properties", {})[EXTENDS_KEY] = {
        "title": "Extends",
        "description": "base recipe file(s), relative to this file, deep-merged in order before this file",
        "anyOf": [name, {"type": "array", "items": name}],
    }
    required = schema.pop("required", [])
    if required:
        schema["if"] = {"required": [EXTENDS_KEY]}
        schema["else"] = {"required": required}
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def _require_discriminators(schema: dict[str, Any]) -> None:
    """Mark each discriminated member's ``type`` as required so editors pick the right member."""
    defs = schema.get("$defs", {})

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            disc = node.get("discriminator")
            if isinstance(disc, dict) and "mapping" in disc:
                prop = disc["propertyName"]
                for ref in disc["mapping"].values():
                    target = defs.get(ref.rsplit("/", 1)[-1])
                    if target is not None and prop not in target.setdefault("required", []):
                        target["required"].insert(0, prop)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
