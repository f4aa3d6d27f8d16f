"""``zoo.load``: a model from a local folder, a run folder, a pretrained name or a Hub repository.

Every source ends as a local model folder (:func:`resolve`), loaded by :func:`~.folder.load_model`.
Downloads go through ``huggingface_hub`` (its cache, token, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and
retries apply) and fetch only the files of a model folder: no pickle is ever downloaded or read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import HubError, ModelFolderError
from ..method import Method
from ..registry import PretrainedEntry
from ..rundir import RunDir
from .folder import CARD, CONFIG, RECIPE, RESULTS, TOKENIZER, WEIGHTS, load_model
from .pretrained import get_pretrained, require_available

#: prefixes of a Hub repository source (``hf://`` is the older spelling)
HUB_PREFIXES = ("hf-hub:", "hf://")
#: the files of a model folder: what is downloaded from a repository (safetensors only)
MODEL_FILES = [CONFIG, WEIGHTS, f"{TOKENIZER}/*", CARD, RECIPE, RESULTS]
#: ``(entry, cache_dir, local_files_only) -> model folder`` for ``official-url`` entries: the converters
#: (``xmodalzoo.convert.official.load_official``, above this room), passed in by ``zoo.load``
OfficialLoader = Callable[[PretrainedEntry, Any, bool], "str | os.PathLike[str]"]


def load(name_or_source: str | os.PathLike[str], *, device: str | torch.device = "cpu", revision: str | None = None,
         cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
         official: OfficialLoader | None = None) -> Method:
    """Load a model for inference, in eval mode on ``device``, with its image transform
    (``model.image_transform()``) and tokenizer (``model.tokenizer``) attached.

    ``name_or_source`` is one of: a model folder; a run folder (``runs/NAME`` loads ``runs/NAME/model``);
    ``hf-hub:ORG/NAME[@REVISION]`` (any Hub repository holding a model folder); a pretrained name
    (``zoo list pretrained``).  ``revision`` (a branch, tag or commit) overrides the pinned one;
    ``cache_dir`` the Hugging Face cache; ``local_files_only`` (or ``HF_HUB_OFFLINE=1``) forbids
    downloads.  ``official`` converts ``official-url`` entries (``zoo.load`` passes the converters).
    """
    folder = resolve(name_or_source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                     official=official)
    return load_model(folder, device=device)


def resolve(name_or_source: str | os.PathLike[str], *, revision: str | None = None,
            cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
            official: OfficialLoader | None = None) -> Path:
    """The local model folder that ``name_or_source`` means (downloading or converting it if needed)."""
    text = str(name_or_source)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return local_folder(path)
    for prefix in HUB_PREFIXES:
        if text.startswith(prefix):
            repo_id, _, pinned = text[len(prefix):].partition("@")
            return download_repo(repo_id, revision or pinned or None, cache_dir=cache_dir,
                                 local_files_only=local_files_only)
    if os.sep in text or text.startswith("."):
        raise FileNotFoundError(f"{path}: no such model folder or run folder")
    return resolve_entry(get_pretrained(text), revision=revision, cache_dir=cache_dir,
                         local_files_only=local_files_only, official=official)


def local_folder(path: Path) -> Path:
    """``path`` when it is a model folder, its ``model/`` when it is a run folder."""
    if (path / CONFIG).is_file():
        return path
    run = RunDir(path)
    if (run.model / CONFIG).is_file():
        return run.model
    raise ModelFolderError(f"{path}: neither a model folder ({CONFIG} missing) nor a run folder with an exported "
                           f"model ({run.model / CONFIG} missing)")


def resolve_entry(entry: PretrainedEntry, *, revision: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
                  official: OfficialLoader | None = None) -> Path:
    """The local model folder of a pretrained entry: downloaded (hf-hub), converted from the
    authors' checkpoint on first use (official-url), or an error (unpublished)."""
    require_available(entry)
    if entry.source == "official-url":
        # converted once into a cached model folder; later loads read that folder's safetensors
        if official is None:
            raise HubError(f"pretrained {entry.name!r} is converted from the authors' checkpoint ({entry.url}): "
                           "load it with zoo.load, which brings the converters")
        return Path(official(entry, cache_dir, local_files_only))
    assert entry.repo_id is not None
    return download_repo(entry.repo_id, revision or entry.revision, cache_dir=cache_dir,
                         local_files_only=local_files_only, name=entry.name)


def hub_cache(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face cache folder in use (``cache_dir``, else ``HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)


def download_repo(repo_id: str, revision: str | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
                  local_files_only: bool = False, name: str | None = None) -> Path:
    """The model folder of a Hub repository, in the Hugging Face cache (downloaded when missing)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{repo_id}@{revision}" if revision else repo_id
    cache = hub_cache(cache_dir)
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                        local_files_only=local_files_only, allow_patterns=MODEL_FILES))
    except LocalEntryNotFoundError:
        raise HubError(f"{where} is not in the Hugging Face cache ({cache}) and downloads are off "
                       f"(HF_HUB_OFFLINE=1 or local_files_only): run 'zoo download {name or 'hf-hub:' + where}' "
                       "where the Hub can be reached, with the same cache folder") from None
    except RepositoryNotFoundError:
        raise HubError(f"Hub repository {repo_id} not found (or private: log in with 'hf auth login')") from None
    except RevisionNotFoundError:
        raise HubError(f"Hub repository {repo_id} has no revision {revision!r}") from None
    except HfHubHTTPError as exc:
        raise HubError(f"downloading {where} failed: {_first_line(exc)}") from None
    except Exception as exc:  # connection errors, after huggingface_hub's retries
        if not isinstance(exc, OSError) and not type(exc).__module__.split(".")[0].startswith("httpx"):
            raise
        raise HubError(f"downloading {where} failed after retries: {type(exc).__name__}: {_first_line(exc)}") from None
    if not (folder / CONFIG).is_file():
        raise HubError(f"Hub repository {where} holds no xmodalzoo model folder ({CONFIG} missing)")
    return folder


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
