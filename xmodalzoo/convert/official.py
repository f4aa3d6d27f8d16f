"""Pretrained entries that are official checkpoints downloadable by URL: download once, convert on
first load, and keep the converted model folder so later loads are plain safetensors.

An entry (``source kind: official-url``) carries, as attributes or mapping keys: ``name``, ``url``,
``converter`` (the ``zoo convert --from`` name), optionally ``sha256`` (pinned digest of the file),
``overrides`` (``method.KEY=VALUE`` settings) and ``vocab_url`` (a JSON vocabulary for files that
hold none).  The cache layout, under ``cache_dir`` (default ``$XMODALZOO_CACHE`` or
``~/.cache/xmodalzoo``)::

    official/<name>/<digest>/checkpoint     the downloaded file (atomic rename after a complete download)
    official/<name>/<digest>/vocab.json     the vocabulary, when the entry has one
    official/<name>/<digest>/model/         the converted model folder (with conversion.json)
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import CheckpointError
from ..hub.folder import CONFIG
from .run import REPORT, convert_checkpoint

#: attempts per download, and the first pause between them (doubled each time)
RETRIES = 4
BACKOFF_S = 0.5
CHUNK = 1 << 20


def default_cache() -> Path:
    """``$XMODALZOO_CACHE``, else ``~/.cache/xmodalzoo``."""
    return Path(os.environ.get("XMODALZOO_CACHE") or Path.home() / ".cache" / "xmodalzoo")


def _field(entry: Any, name: str, default: Any = None) -> Any:
    if isinstance(entry, Mapping):
        return entry.get(name, default)
    return getattr(entry, name, default)


def official_folder(entry: Any, cache_dir: str | Path | None = None) -> Path:
    """Where the entry's download and converted folder live (see the module docstring)."""
    url = str(_field(entry, "url"))
    digest = _field(entry, "sha256") or hashlib.sha256(url.encode()).hexdigest()
    return Path(cache_dir or default_cache()) / "official" / str(_field(entry, "name")) / str(digest)[:16]


def load_official(entry: Any, cache_dir: str | Path | None = None, local_files_only: bool = False) -> Path:
    """The converted model folder of an official-URL entry: from the cache, or downloaded and converted.

    ``local_files_only`` (or ``HF_HUB_OFFLINE=1``) never touches the network: an entry that is not
    converted yet is an error naming the cache folder.  A download that fails (after retries, with
    backoff, on connection errors, 5xx answers and truncated bodies) or whose sha256 differs from the
    pinned one leaves no file behind.
    """
    name, url = _field(entry, "name"), _field(entry, "url")
    if not name or not url or not _field(entry, "converter"):
        raise CheckpointError(f"official entry {entry!r} needs a name, a url and a converter")
    root = official_folder(entry, cache_dir)
    model = root / "model"
    if (model / CONFIG).is_file() and (model / REPORT).is_file():
        return model
    if local_files_only or os.environ.get("HF_HUB_OFFLINE", "").strip() in {"1", "true", "yes", "on"}:
        raise CheckpointError(f"official checkpoint {name!r} is not converted in the cache {root} and downloads are "
                              "off (local_files_only / HF_HUB_OFFLINE); load it once with the network on")
    checkpoint = root / "checkpoint"
    if not checkpoint.is_file():
        download(str(url), checkpoint, sha256=_field(entry, "sha256"))
    vocab = None
    if _field(entry, "vocab_url"):
        vocab = root / "vocab.json"
        if not vocab.is_file():
            download(str(_field(entry, "vocab_url")), vocab)
    overrides: Sequence[str] = tuple(_field(entry, "overrides", ()) or ())
    convert_checkpoint(str(_field(entry, "converter")), checkpoint, model, overrides=overrides, vocab=vocab)
    return model


def download(url: str, target: str | Path, *, sha256: str | None = None, retries: int = RETRIES,
             backoff_s: float = BACKOFF_S, timeout_s: float = 60.0) -> Path:
    """Download ``url`` to ``target`` through a temporary file in the same folder and an atomic rename.

    Connection errors, HTTP 5xx and bodies shorter than their Content-Length are retried
    ``retries`` times in all (pauses ``backoff_s``, doubling); other HTTP errors fail at once.
    A pinned ``sha256`` that does not match is an error.  Nothing is left at ``target`` on failure.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            digest = _fetch(url, fd, timeout_s)
        except urllib.error.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            if exc.code < 500:
                raise CheckpointError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            last = f"HTTP {exc.code} {exc.reason}"
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException, _Truncated) as exc:
            tmp.unlink(missing_ok=True)
            last = str(getattr(exc, "reason", None) or exc)
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if sha256 is not None and digest != sha256.lower():
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"{url}: sha256 {digest} does not match the pinned {sha256} (file discarded)")
        os.replace(tmp, target)
        return target
    raise CheckpointError(f"{url}: download failed after {retries} attempts ({last}); nothing was kept")


class _Truncated(Exception):
    """The connection closed before Content-Length bytes arrived."""


def _fetch(url: str, fd: int, timeout_s: float) -> str:
    """Stream ``url`` into the open file ``fd`` (closed here); returns the sha256 of the body."""
    digest = hashlib.sha256()
    received = 0
    with os.fdopen(fd, "wb") as out:
        request = urllib.request.Request(url, headers={"User-Agent": "xmodalzoo"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (http/https URLs)
            expected = response.headers.get("Content-Length")
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (ConnectionError, OSError, http.client.IncompleteRead) as exc:
                    raise _Truncated(f"connection dropped after {received} bytes ({exc})") from None
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
            if expected is not None and received != int(expected):
                raise _Truncated(f"got {received} of {expected} bytes")
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()
