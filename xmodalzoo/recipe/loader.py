"""Reading recipe files: YAML with clear errors, ``extends:`` inheritance and ``--set`` overrides."""
from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..rundir import RESOLVED_RECIPE
from ..errors import RecipeError
from .messages import describe_value
from .model import Recipe, section_default, section_model, validate_recipe

EXTENDS_KEY = "extends"


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Read, merge (``extends:``), override (``KEY.PATH=VALUE`` strings) and validate a recipe file."""
    data = load_recipe_data(path, overrides)
    return validate_recipe(data, str(path))


def load_recipe_data(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The recipe file as a plain mapping, after ``extends:`` and the overrides, not yet validated.

    An override that changes a component's ``type`` (``--set method.type=pcme``) re-types that
    section by the rule of :func:`retype` (docs/recipes.md, "Changing a type with --set").
    """
    data = _load_with_extends(Path(path), stack=[])
    return apply_overrides(data, overrides, defaults=section_default,
                           retype=lambda d, at, node, new, others: retype(d, at, node, new, others, str(path)))


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one YAML file whose top level must be a mapping; any problem is a one-line RecipeError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the file ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise RecipeError(f"{where}: invalid YAML: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        raise RecipeError(f"{path}: the file is empty; a recipe is a mapping with at least data: and method:")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level (data:, method:, ...), got {describe_value(data)}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``: mappings merge key by key, anything else replaces.

    A mapping whose ``type`` differs from the base's replaces it whole: the options of one
    component mean nothing to another.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and not _changes_type(old, value):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"train.epochs=3"`` -> ``(["train", "epochs"], 3)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not p.strip() for p in parts):
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. train.epochs=3")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None  # noqa: S506
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise RecipeError(f"--set {text!r}: the value is not valid YAML ({first})") from None
    return [int(p) if p.strip().isdigit() else p.strip() for p in parts], value


def apply_overrides(
    data: dict[str, Any],
    overrides: Sequence[str],
    defaults: Callable[[dict[str, Any], list[str | int]], Any] | None = None,
    retype: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY.PATH=VALUE`` override set.

    A missing mapping on the way is created from ``defaults(data, path)`` when that gives a
    component's default (a mapping with ``type``), else empty.  An override of ``...type`` that
    changes the type of the mapping there calls ``retype(data, path, mapping, new_type, other_paths)``
    instead (``other_paths``: the paths of the other overrides).
    """
    data = copy.deepcopy(data)
    parsed = [parse_override(text) for text in overrides]
    for k, text in enumerate(overrides):
        path, value = parsed[k]
        node: Any = data
        for i, part in enumerate(path[:-1]):
            if isinstance(node, dict) and node.get(str(part)) is None:
                start = defaults(data, path[: i + 1]) if defaults is not None else None
                node[str(part)] = copy.deepcopy(start) if isinstance(start, dict) and "type" in start else {}
            node = _child(node, part, path[: i + 1], text)
        if (retype is not None and path[-1] == "type" and isinstance(node, dict) and isinstance(value, str)
                and isinstance(node.get("type"), str) and node["type"] != value):
            retype(data, path[:-1], node, value, [p for j, (p, _) in enumerate(parsed) if j != k])
            continue
        _set(node, path[-1], value, path, text)
    return data


def retype(data: dict[str, Any], at: list[str | int], node: dict[str, Any], new: str,
           other_paths: list[list[str | int]], source: str = "the recipe") -> None:
    """Change the type of the component mapping ``node`` (at ``at`` in ``data``) to ``new``, in place.

    What the recipe wrote in ``node`` is kept where it means the same to ``new``, and only there:

    * an option (a value that is not a component) is kept when ``new``'s config has an option of that
      name (``embed_dim``, ``margin``), dropped otherwise (it means nothing to ``new``);
    * a part (a component mapping, e.g. ``loss: {type: triplet}``) is kept when it is of the type
      ``new`` has by default there (the encoders of a recipe sized for its data), or when another
      override of the same list sets something inside it (it then decides);
    * any other part conflicts: a :class:`RecipeError` with one line per part, naming it.

    Everything else comes from ``new``'s defaults, at validation.
    """
    old_type = node["type"]
    where = _dotted(at) if at else "the recipe"
    written = {k: v for k, v in node.items() if k != "type"}
    node.clear()
    node["type"] = new
    fields = section_model(data, at)
    if fields is None:  # unknown type: validation names it
        node.update(written)
        return
    problems = []
    for key, value in written.items():
        part = [*at, key]
        if isinstance(value, dict) and "type" in value:
            default = section_default(data, part)
            default_type = default.get("type") if isinstance(default, dict) else None
            touched = any(p[: len(part)] == part for p in other_paths)
            if touched or default_type in (None, value["type"]):
                node[key] = value
            else:
                problems.append(
                    f"{source}: --set {where}.type={new}: {_dotted(part)} is {value['type']!r} in the recipe "
                    f"(for {old_type!r}), but {new!r} has {default_type!r} there; say which in the same --set "
                    f"list (--set {_dotted(part)}.type={default_type} or ={value['type']}) or remove it "
                    f"from the recipe")
        elif key in fields.model_fields:
            node[key] = value
    if problems:
        raise RecipeError(problems)


def _child(node: Any, part: str | int, path: list[str | int], text: str) -> Any:
    if isinstance(node, dict):
        return node[str(part)]
    if isinstance(node, list) and isinstance(part, int):
        if part >= len(node):
            raise RecipeError(f"--set {text!r}: {_dotted(path[:-1])} has {len(node)} items, no index {part}")
        return node[part]
    raise RecipeError(f"--set {text!r}: {_dotted(path[:-1])} is {describe_value(node)}, not a mapping")


def _set(node: Any, part: str | int, value: Any, path: list[str | int], text: str) -> None:
    if isinstance(node, dict):
        node[str(part)] = value
    elif isinstance(node, list) and isinstance(part, int):
        if part >= len(node):
            raise RecipeError(f"--set {text!r}: {_dotted(path[:-1])} has {len(node)} items, no index {part}")
        node[part] = value
    else:
        raise RecipeError(f"--set {text!r}: {_dotted(path[:-1])} is {describe_value(node)}, not a mapping")


def _dotted(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "the recipe"


def _changes_type(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return "type" in old and "type" in new and old["type"] != new["type"]


def _load_with_extends(path: Path, stack: list[Path]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in [*stack[stack.index(resolved):], resolved])
        raise RecipeError(f"{path}: extends cycle: {chain}")
    data = read_yaml(path)
    if path.name != RESOLVED_RECIPE:  # a run's resolved recipe holds its roots as the run used them
        anchor_data_root(data, path)
    bases = data.pop(EXTENDS_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise RecipeError(f"{path}: extends: expected a file name or a list of file names, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = Path(base) if os.path.isabs(base) else path.parent / base
        merged = deep_merge(merged, _load_with_extends(base_path, [*stack, resolved]))
    return deep_merge(merged, data)


def anchor_data_root(data: dict[str, Any], recipe_path: Path) -> None:
    """Make a relative ``data.root`` written in the recipe file ``recipe_path`` absolute, against that
    file's folder (as ``extends:`` paths are), in place.

    ``~`` and ``$VARS`` are expanded first (a root with an unset variable is left for the loader to
    report).  When the recipe-relative folder does not exist but the same path does from the current
    directory (how relative roots used to resolve), that one is used, with a warning.  A ``--set
    data.root=...`` on the command line is a path typed in the shell: it stays relative to the
    current directory (overrides apply after this).
    """
    section = data.get("data")
    root = section.get("root") if isinstance(section, dict) else None
    if not isinstance(root, str) or not root.strip():
        return
    expanded = os.path.expandvars(os.path.expanduser(root))
    if "$" in expanded or os.path.isabs(expanded):
        return
    beside = Path(os.path.abspath(recipe_path.parent / expanded))
    from_cwd = Path(os.path.abspath(expanded))
    if not beside.exists() and from_cwd.exists():
        warnings.warn(f"{recipe_path}: data.root {root!r} resolves against the recipe's folder ({beside}), which "
                      f"does not exist; using {from_cwd} (from the current directory) as before. Write a path "
                      f"relative to the recipe, or an absolute one", FutureWarning, stacklevel=2)
        section["root"] = str(from_cwd)
        return
    section["root"] = str(beside)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a key written twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if isinstance(key, (str, int, float, bool)) or key is None:
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-3 as a string; recipes mean the number
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
# and dates stay strings: no recipe field is a date, and `name: 2024-01-01` means the text
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _UniqueKeyLoader.yaml_implicit_resolvers.items()
}
