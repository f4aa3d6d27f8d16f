"""``zoo.save_pretrained`` and ``zoo.push_to_hub``: write a model folder, publish it on the Hub.

Uploads go through huggingface_hub (``create_repo``, ``upload_folder``); the token comes from its
usual places (``HF_TOKEN``, ``hf auth login``) or the ``token`` argument, and is never printed or logged.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..method import Method
from .folder import read_config, save_model, write_card
from .integrity import verify_files
from .load import MODEL_FILES, local_folder


def save_pretrained(model: Method, folder: str | os.PathLike[str], *, name: str | None = None,
                    recipe: str | None = None, results: Mapping[str, Any] | None = None,
                    datasets: Sequence[str] = (), license: str | None = None) -> Path:
    """Write ``model`` as a model folder (see :mod:`xmodalzoo.hub.folder`) and return its path::

        zoo.save_pretrained(model, "my-model", name="vse-flickr", datasets=["flickr30k"], license="mit")
    """
    return save_model(model, folder, name=name, recipe=recipe, results=results, datasets=datasets,
                      license=license)


def push_to_hub(model_or_folder: Method | str | os.PathLike[str], repo_id: str, *, private: bool | None = None,
                revision: str | None = None, create_pr: bool = False, commit_message: str | None = None,
                token: str | None = None) -> str:
    """Publish a model (a :class:`Method`, a model folder or a run folder) to the Hub repository
    ``repo_id`` (created when missing; ``private`` for a new one), on branch ``revision`` (created
    from main when missing) or as a pull request (``create_pr``).  The card's usage snippet is set to
    ``zoo.load("hf-hub:REPO_ID")``.  Returns the URL of the commit (or of the pull request)."""
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="xmodalzoo-push-") as tmp:
        staged = Path(tmp) / "model"
        if isinstance(model_or_folder, Method):
            save_model(model_or_folder, staged)
        else:
            folder = local_folder(Path(os.path.expanduser(str(model_or_folder))))
            config = read_config(folder)
            verify_files(folder, config.get("files") or {})  # never publish a corrupted folder
            shutil.copytree(folder, staged)
        write_card(staged, f"hf-hub:{repo_id}")
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(staged), repo_id=repo_id, revision=revision, create_pr=create_pr,
            allow_patterns=MODEL_FILES, commit_message=commit_message or f"Upload xmodalzoo model {repo_id}",
        )
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))

