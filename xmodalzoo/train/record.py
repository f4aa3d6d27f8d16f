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

from ..files import write_text_atomic
from ..plugins import plugin_status
from ..rundir import RunDir
from ..version import __version__

#: distributions whose versions every run records (besides torch, python and the plugins)
KEY_DEPENDENCIES = ("timm", "transformers", "torchvision", "pydantic", "numpy", "safetensors")


def resolved_recipe_yaml(recipe: Any) -> str:
    """The recipe with every default filled in, as YAML that ``load_recipe`` reads back unchanged."""
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def environment_info(recipe: Any, argv: Sequence[str], device: Any,
                     parallelism: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions (xmodalzoo, plugins, key dependencies), hardware, the git commit of the xmodalzoo
    code, command line, seed and time of a run, and the threads and data workers it chose
    (``parallelism``: :meth:`xmodalzoo.train.threads.Parallelism.as_record`)."""
    import torch

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
        "parallelism": parallelism,
        "gpu": gpu,
        "git_commit": code_commit(),
        "command": list(argv),
        "seed": recipe.seed,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_run_record(run_dir: str | os.PathLike[str], recipe: Any, argv: Sequence[str], device: Any,
                     parallelism: dict[str, Any] | None = None) -> None:
    """Write the resolved recipe and the environment into run directory ``run_dir`` (created if needed)."""
    run = RunDir(run_dir)
    write_text_atomic(run.resolved_recipe, resolved_recipe_yaml(recipe))
    info = environment_info(recipe, argv, device, parallelism)
    write_text_atomic(run.environment, json.dumps(info, indent=2) + "\n")


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
    package = Path(__file__).resolve().parents[1]
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
