"""What is known about a pretrained entry, including whether it is in the local cache (no request made)."""
from __future__ import annotations

from typing import Any

from ..errors import HubError
from ..registry import PretrainedEntry
from .load import OfficialLoader, resolve_entry
from .pretrained import get_pretrained


def pretrained_info(name: str, *, cache_dir: str | None = None,
                    official: OfficialLoader | None = None) -> dict[str, Any]:
    """Everything known about pretrained entry ``name``, as plain data: its declared fields
    (source, repo_id/url, revision, sha256, files, metrics, licence, paper, recipe...), ``available``,
    ``location`` and ``cached`` (the local model folder when it is already in the cache, else None;
    looked up without any network request)."""
    from dataclasses import asdict

    entry = get_pretrained(name)
    info: dict[str, Any] = asdict(entry)
    info["available"], info["location"] = entry.available, entry.location
    info["cached"] = cached_folder(entry, cache_dir=cache_dir, official=official)
    return info


def cached_folder(entry: PretrainedEntry, *, cache_dir: str | None = None,
                  official: OfficialLoader | None = None) -> str | None:
    """The entry's model folder when it is in the local cache (no request is made), else None."""
    if not entry.available:
        return None
    try:
        return str(resolve_entry(entry, cache_dir=cache_dir, local_files_only=True, official=official))
    except (HubError, OSError, ImportError):
        return None
