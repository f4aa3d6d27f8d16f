"""The public Python API: listing, inspecting and building registered components."""
from __future__ import annotations

import os
from typing import Any, Sequence

from .plugins import PluginStatus, discover, plugin_status
from .registry import KINDS, REGISTRY, Entry


def list_methods(filter: str | None = None) -> list[str]:
    """Names of the registered methods (glob ``filter`` optional)."""
    discover()
    return [e.name for e in REGISTRY.list("method", filter)]


def list_components(kind: str, filter: str | None = None) -> list[str]:
    """Names of the registered components of ``kind`` (glob ``filter`` optional)."""
    discover()
    return [e.name for e in REGISTRY.list(kind, filter)]


def plugins() -> list[PluginStatus]:
    """Every plugin found (core first): name, distribution, version, ok, error."""
    return plugin_status()


def info(name: str, kind: str | None = None) -> list[Entry]:
    """The registry entries called ``name`` (in ``kind`` only, when given)."""
    discover()
    if kind is not None:
        return [REGISTRY.get(kind, name)]
    found = REGISTRY.find(name)
    if not found:
        import difflib

        from .registry import RegistryError

        names = sorted({n for kind in REGISTRY.entries.values() for n in kind})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        available = f" Available: {', '.join(names) if names else '(none)'}."
        failed = (f" Plugins that failed to load: {', '.join(REGISTRY.failed_plugins)}."
                  if REGISTRY.failed_plugins else "")
        raise RegistryError(f"unknown component {name!r}.{hint}{available} See 'zoo list components'.{failed}")
    return found


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Any:
    """Read, merge, override and validate a recipe YAML file (see :mod:`xmodalzoo.recipe`)."""
    from .recipe import load_recipe as _load_recipe

    return _load_recipe(path, overrides)


def validate_recipe(data: dict[str, Any], source: str = "<recipe>") -> Any:
    """Validate a recipe mapping; problems raise ``RecipeError`` with one message each."""
    from .recipe import validate_recipe as _validate_recipe

    return _validate_recipe(data, source)


def build_component(kind: str, cfg: Any, **context: Any) -> Any:
    """Build a registered component from its config (instance or mapping with ``type``)."""
    from .method import build

    return build(kind, cfg, **context)


def load(name_or_path: Any, *, device: Any = "cpu", revision: str | None = None) -> Any:
    """Load a model for inference: a model folder, a registered pretrained name, or ``hf://owner/repo``."""
    from .hub.load import load as _load

    return _load(name_or_path, device=device, revision=revision)


def build_method(recipe_or_cfg: Any, *, train_captions: Sequence[str] | None = None) -> Any:
    """Build the (untrained) method of a recipe or a method config; ``train_captions`` build its vocabulary."""
    from .method import build

    cfg = getattr(recipe_or_cfg, "method", recipe_or_cfg)
    return build("method", cfg, train_captions=train_captions)


def load_run(run_dir: str | os.PathLike[str], split: str = "test", *, device: Any = None) -> Any:
    """A finished run, ready for analysis: ``(recipe, method, dataset)``.

    The recipe is the run's ``recipe.resolved.yaml``, the method its exported ``model/`` folder (in
    eval mode, on ``device``: by default the recipe's ``eval.device``; ``"auto"`` = CUDA when
    available) and the dataset the ``split`` of the recipe's data::

        recipe, model, test = zoo.load_run("runs/pcme_shapes/2026-11-22_10-00-00")
    """
    from pathlib import Path

    from .eval.encode import resolve_device
    from .hub.folder import load_model
    from .method import build

    run = Path(run_dir)
    if not (run / "recipe.resolved.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a run directory (recipe.resolved.yaml is missing)")
    if not (run / "model" / "config.json").is_file():
        raise FileNotFoundError(f"{run}: the run has no exported model folder yet (model/config.json is missing)")
    recipe = load_recipe(run / "recipe.resolved.yaml")
    method = load_model(run / "model", device=resolve_device(recipe.eval.device if device is None else device))
    return recipe, method, build("dataset", recipe.data, split=split)


__all__ = [
    "KINDS", "build_component", "build_method", "info", "list_components", "list_methods", "load", "load_recipe",
    "load_run", "plugins", "validate_recipe",
]
