"""Checksums of a model folder's weight files: recorded in ``config.json`` at save, verified at load
before any weight is read (a tampered or corrupted download fails here, with one line)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelFolderError

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"sha256": ..., "size": ...}`` of a file, as ``config.json`` records it under ``files``."""
    return {"sha256": sha256_file(path), "size": Path(path).stat().st_size}


def verify_files(directory: str | Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    """Check each file listed in ``files`` (``{name: {"sha256", "size"}}``) against its record; the
    first mismatch raises :class:`ModelFolderError` naming the file and both checksums."""
    directory = Path(directory)
    for name, record in files.items():
        path = directory / name
        if not path.is_file():
            raise ModelFolderError(f"{path}: missing (config.json lists it with sha256 {record.get('sha256')})")
        size = path.stat().st_size
        if "size" in record and size != record["size"]:
            raise ModelFolderError(f"{path}: {size} bytes where config.json records {record['size']} "
                                   "(truncated or modified): download or export it again")
        actual = sha256_file(path)
        if actual != record.get("sha256"):
            raise ModelFolderError(f"{path}: sha256 {actual} does not match {record.get('sha256')} recorded in "
                                   "config.json (the file is corrupted or was modified): download or export it again")
