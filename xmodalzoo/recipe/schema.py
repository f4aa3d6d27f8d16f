"""The JSON Schema of recipes with every installed plugin, for editors' YAML language servers."""
from __future__ import annotations

from typing import Any

from .loader import EXTENDS_KEY
from .model import recipe_model

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def recipe_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of recipes with every installed plugin, for editors and tooling."""
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
