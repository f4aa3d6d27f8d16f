"""What a run directory records about how it was made: the resolved recipe and the environment."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from .model import Recipe

RESOLVED_RECIPE = "recipe.resolved.yaml"
ENVIRONMENT = "environment.json"
#: distributions whose versions every run records (besides torch, python and the plugins)
KEY_DEPENDENCIES = ("timm", "transformers", "torchvision", "pydantic", "numpy", "safetensors")


def resolved_recipe_yaml(recipe: Recipe) -> str:
    """The recipe with every default filled in, as YAML that ``load_recipe`` reads back unchanged."""
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def environment_info(recipe: Recipe, argv: Sequence[str], device: Any) -> dict[str, Any]:
    """Versions (xmodalzoo, plugins, key dependencies), hardware, the git commit of the xmodalzoo
    code, command line, seed and time of a run."""
    import torch

    from .. import __version__
    from ..plugins import plugin_status

    device_name = str(device)
    cuda = torch.cuda.is_available()
    gpu = None
    if cuda and device_name.startswith("cuda"):
        try:
            gpu = torch.cuda.get_device_name(torch.device(device_name))
        except (RuntimeError, AssertionError, ValueError):
            gpu = None
    return {
        "xmodalzoo": __version__,
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version, "ok": p.ok,
             **({"error": p.error} if p.error else {})}
            for p in plugin_status()
        ],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "dependencies": dependency_versions(),
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "device": device_name,
        "gpu": gpu,
        "git_commit": code_commit(),
        "command": list(argv),
        "seed": recipe.seed,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_run_record(run_dir: str | os.PathLike[str], recipe: Recipe, argv: Sequence[str], device: Any) -> None:
    """Write ``recipe.resolved.yaml`` and ``environment.json`` into ``run_dir`` (created if needed)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESOLVED_RECIPE).write_text(resolved_recipe_yaml(recipe), encoding="utf-8")
    info = environment_info(recipe, argv, device)
    (run_dir / ENVIRONMENT).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def dependency_versions(names: Sequence[str] = KEY_DEPENDENCIES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def code_commit() -> str | None:
    """The git commit of the xmodalzoo code that runs (not of the working directory), or None.

    None unless the package directory is tracked by a git checkout (an editable install of a clone);
    a regular install in a virtual environment that happens to lie inside some checkout is not.
    """
    from .. import __file__ as package_init

    package = Path(package_init).resolve().parent
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=package,
                                 capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if tracked.returncode != 0:
        return None
    return git_commit(package)


def git_commit(directory: str | os.PathLike[str]) -> str | None:
    """The commit checked out in ``directory`` (with ``+dirty`` for local changes), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("+dirty" if status.returncode == 0 and status.stdout.strip() else "")
