"""The Recipe model: what one YAML recipe holds, typed against everything registered, and its validation."""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel, Field, ValidationError

from ..config import Component, ComponentConfig
from ..contracts import method_problems
from ..errors import RecipeError
from ..eval.config import EvalConfig
from ..registry import resolve_config
from ..train.config import TrainConfig
from .messages import describe_value, format_validation_error, strip_annotated, type_tag, union_members


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
    """Validate recipe ``data``; problems raise :class:`RecipeError` with lines prefixed by ``source``.

    Besides each section's own options, the parts of the method must fit together: the contracts
    their components declare are checked here (:mod:`xmodalzoo.contracts`), not at the first step.
    """
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping at the top level (data:, method:, ...), "
                          f"got {describe_value(data)}")
    model = recipe_model()
    try:
        recipe = model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, model, source)) from None
    problems = method_problems(recipe.method, "method")
    if problems:
        raise RecipeError(f"{source}: {line}" for line in problems)
    return recipe


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


def section_model(data: dict[str, Any], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The config class of the recipe section at ``path`` given the (partial) recipe ``data`` (a
    component's class is picked by the ``type`` written there); None where unknown."""
    node: Any = recipe_model()
    current: Any = data
    for part in path:
        node = _model_of(node, current)
        if node is None or part not in node.model_fields:
            return None
        node = node.model_fields[part].annotation
        current = current.get(part) if isinstance(current, dict) else None
    return _model_of(node, current)


def _model_of(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The model class an annotation stands for, the member whose tag is ``value["type"]`` for a union."""
    annotation = strip_annotated(annotation)
    members = union_members(annotation)
    if members is not None:
        tags = {type_tag(m): m for m in members}
        return tags.get(value.get("type")) if isinstance(value, dict) else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
