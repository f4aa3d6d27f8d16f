"""The public Python API (``import xmodalzoo as zoo``): listing, inspecting, building and loading."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import RegistryError
from .plugins import PluginStatus, plugin_status
from .registry import KINDS, REGISTRY, Entry, PretrainedEntry

if TYPE_CHECKING:
    import torch

    from .data.base import RetrievalDataset
    from .method import Method
    from .recipe.model import Recipe


def list_methods(filter: str | None = None) -> list[str]:
    """Names of the registered methods (glob ``filter`` optional)."""
    return [e.name for e in REGISTRY.list("method", filter)]


def list_components(kind: str, filter: str | None = None) -> list[str]:
    """Names of the registered components of ``kind`` (glob ``filter`` optional)."""
    return [e.name for e in REGISTRY.list(kind, filter)]


def plugins() -> list[PluginStatus]:
    """Every plugin found (core first): name, distribution, version, ok, error."""
    return plugin_status()


def info(name: str, kind: str | None = None) -> list[Entry]:
    """The registry entries called ``name`` (in ``kind`` only, when given)."""
    if kind is not None:
        return [REGISTRY.get(kind, name)]
    found = REGISTRY.find(name)
    if not found:
        names = sorted({n for kind in REGISTRY.entries.values() for n in kind})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        available = f" Available: {', '.join(names) if names else '(none)'}."
        failed = (f" Plugins that failed to load: {', '.join(REGISTRY.failed_plugins)}."
                  if REGISTRY.failed_plugins else "")
        raise RegistryError(f"unknown component {name!r}.{hint}{available} See 'zoo list components'.{failed}")
    return found


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Read, merge, override and validate a recipe YAML file (see :mod:`xmodalzoo.recipe`)."""
    from .recipe import load_recipe as _load_recipe

    return _load_recipe(path, overrides)


def validate_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a recipe mapping; problems raise ``RecipeError`` with one message each."""
    from .recipe import validate_recipe as _validate_recipe

    return _validate_recipe(data, source)


def build_component(kind: str, cfg: Any, **context: Any) -> Any:
    """Build a registered component from its config (instance or mapping with ``type``)."""
    return REGISTRY.build(kind, cfg, **context)


def build_method(recipe_or_cfg: Any, *, train_captions: Sequence[str] | None = None) -> Method:
    """Build the (untrained) method of a recipe or a method config; ``train_captions`` build its vocabulary."""
    cfg = getattr(recipe_or_cfg, "method", recipe_or_cfg)
    return REGISTRY.build("method", cfg, train_captions=train_captions)  # type: ignore[no-any-return]


def load(name_or_source: str | os.PathLike[str], *, device: str | torch.device = "cpu", revision: str | None = None,
         cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False) -> Method:
    """Load a model for inference (eval mode, image transform and tokenizer attached) from a model
    folder, a run folder, ``hf-hub:ORG/NAME[@REVISION]`` or a pretrained name::

        model = zoo.load("hf-hub:zoo-tester/vse-tiny", device="cpu")

    See :func:`xmodalzoo.hub.load.load` and docs/pretrained.md.
    """
    from .hub.load import load as _load

    return _load(name_or_source, device=device, revision=revision, cache_dir=cache_dir,
                 local_files_only=local_files_only, official=convert_official)


def convert_official(entry: PretrainedEntry, cache_dir: Any, local_files_only: bool) -> Any:
    """The cached model folder converted from an ``official-url`` entry's checkpoint (by ``xmodalzoo.convert``)."""
    from .convert.official import load_official

    return load_official(entry, cache_dir, local_files_only)


def resolve_source(name_or_source: str | os.PathLike[str], *, revision: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False) -> Path:
    """The local model folder ``zoo.load(name_or_source)`` would load (downloaded or converted when needed)."""
    from .hub.load import resolve

    return resolve(name_or_source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                   official=convert_official)


def list_pretrained(filter: str | None = None) -> list[PretrainedEntry]:
    """The pretrained entries the installed plugins declare (glob ``filter``, e.g. ``"dive*"``),
    published or not (``entry.available``)."""
    from .hub.pretrained import list_pretrained as _list

    return _list(filter)


def pretrained_info(name: str, *, cache_dir: str | None = None) -> dict[str, Any]:
    """A pretrained entry as plain data, with ``available``, ``location`` and ``cached`` (local folder or None)."""
    from .hub.info import pretrained_info as _info

    return _info(name, cache_dir=cache_dir, official=convert_official)


def save_pretrained(model: Method, folder: str | os.PathLike[str], **card: Any) -> Any:
    """Write ``model`` as a model folder; ``card`` keywords: name, recipe, results, datasets, license."""
    from .hub.publish import save_pretrained as _save

    return _save(model, folder, **card)


def push_to_hub(model_or_folder: Any, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                create_pr: bool = False, token: str | None = None) -> str:
    """Publish a model, model folder or run folder to the Hub repository ``repo_id``; returns the commit URL."""
    from .hub.publish import push_to_hub as _push

    return _push(model_or_folder, repo_id, private=private, revision=revision, create_pr=create_pr, token=token)


def load_run(run_dir: str | os.PathLike[str], split: str = "test", *,
             device: str | torch.device | None = None) -> tuple[Recipe, Method, RetrievalDataset]:
    """A finished run, ready for analysis: ``(recipe, method, dataset)``.

    The recipe is the run's ``recipe.resolved.yaml``, the method its exported ``model/`` folder (in
    eval mode, on ``device``: by default the recipe's ``eval.device``; ``"auto"`` = CUDA when
    available) and the dataset the ``split`` of the recipe's data::

        recipe, model, test = zoo.load_run("runs/pcme_shapes/2026-11-22_10-00-00")
    """
    from .devices import resolve_device
    from .hub.folder import CONFIG, load_model
    from .rundir import RunDir

    run = RunDir(run_dir)
    recipe = load_recipe(run.require_recipe())
    if not (run.model / CONFIG).is_file():
        raise FileNotFoundError(f"{run}: the run has no exported model folder yet ({run.model / CONFIG} is missing)")
    method = load_model(run.model, device=resolve_device(recipe.eval.device if device is None else device))
    return recipe, method, REGISTRY.build("dataset", recipe.data, split=split)


def export_run(run_dir: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Write the model of a finished run as a model folder at ``folder``, with the run's resolved
    recipe and test results (a run exported by an older xmodalzoo is rewritten in the current format)."""
    import json

    from .eval.report import to_jsonable
    from .hub.folder import CONFIG, load_model, save_model
    from .recipe import load_recipe as _load_recipe
    from .rundir import RunDir

    run = RunDir(run_dir)
    recipe_path = run.require_recipe()
    if not (run.model / CONFIG).is_file():
        raise FileNotFoundError(f"{run}: the run has no exported model yet ({run.model / CONFIG} is missing); "
                                "let its training finish (zoo train resumes it)")
    recipe = _load_recipe(recipe_path)
    results = json.loads(run.results("test").read_text()) if run.results("test").is_file() else None
    method = load_model(run.model)
    return save_model(method, folder, name=recipe.name or run.name, recipe=recipe_path.read_text(),
                      results=to_jsonable(results) if results else None,
                      datasets=[str(getattr(recipe.data, "type", "unknown"))])


__all__ = [
    "KINDS", "build_component", "build_method", "info", "list_components", "list_methods", "export_run", "list_pretrained", "load",
    "load_recipe", "load_run", "plugins", "pretrained_info", "push_to_hub", "save_pretrained", "validate_recipe",
]
