"""Typed YAML recipes: loading (``extends:``, ``--set``), validation with readable errors, the JSON Schema."""
from ..errors import RecipeError
from .loader import apply_overrides, deep_merge, load_recipe, load_recipe_data, parse_override, read_yaml
from .model import Recipe, recipe_model, validate_recipe
from .schema import recipe_json_schema

__all__ = [
    "Recipe",
    "RecipeError",
    "apply_overrides",
    "deep_merge",
    "load_recipe",
    "load_recipe_data",
    "parse_override",
    "read_yaml",
    "recipe_json_schema",
    "recipe_model",
    "validate_recipe",
]
