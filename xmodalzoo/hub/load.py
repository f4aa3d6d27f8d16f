"""``zoo.load``: a model from a local folder, a registered pretrained name, or a Hub repository."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..method import Method
from .folder import CONFIG, load_model
from .pretrained import get_pretrained


def load(name_or_path: str | Path, *, device: str | torch.device = "cpu", revision: str | None = None,
         cache_dir: str | None = None) -> Method:
    """Load a model for inference.

    ``name_or_path`` is a model folder on disk, a pretrained name registered by a plugin (e.g.
    ``"pcme-coco"``; see ``zoo list pretrained``), or ``hf://OWNER/REPO`` for any Hub repository
    holding a model folder.  Downloads go through ``huggingface_hub`` (its cache, token and
    ``HF_ENDPOINT`` settings apply).
    """
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        return load_model(path, device=device)
    name = str(name_or_path)
    if name.startswith("hf://"):
        repo_id = name[len("hf://"):]
    else:
        entry = get_pretrained(name)
        repo_id, revision = entry.repo_id, revision or entry.revision
    from huggingface_hub import snapshot_download

    folder = snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir)
    if not (Path(folder) / CONFIG).is_file():
        raise FileNotFoundError(f"Hub repository {repo_id} holds no xmodalzoo model folder ({CONFIG} missing)")
    return load_model(folder, device=device)


def push_to_hub(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                commit_message: str = "Upload xmodalzoo model") -> str:
    """Upload a model folder (``config.json``, ``model.safetensors``, tokenizer, card) to the Hub."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder}: not a model folder ({CONFIG} is missing)")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
