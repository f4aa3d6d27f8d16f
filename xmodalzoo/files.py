"""Writing files so that a crash never leaves half of one: atomic files, atomic directories, JSONL.

A directory is replaced in two renames (``final`` -> ``.final.old``, then the new one -> ``final``,
see :func:`commit_dir`).  A crash between them leaves only ``.final.old``, a complete earlier copy:
:func:`committed_dir` falls back to it, so a reader never loses it.  Used by checkpoints
(:mod:`xmodalzoo.train.checkpoint`), model folders (:mod:`xmodalzoo.hub.folder`), run records and
result files.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator


def atomic_dir(final: str | os.PathLike[str]) -> Path:
    """A fresh temporary directory next to ``final`` (move it in place with :func:`commit_dir`)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def old_dir(final: str | os.PathLike[str]) -> Path:
    """Where :func:`commit_dir` parks the previous ``final`` while swapping in the new one."""
    final = Path(final)
    return final.with_name(f".{final.name}.old")


def committed_dir(final: str | os.PathLike[str]) -> Path | None:
    """``final`` when it is a directory; else ``.final.old`` when a crash between the two renames of
    :func:`commit_dir` left only that (a complete earlier copy); else None."""
    final = Path(final)
    if final.is_dir():
        return final
    old = old_dir(final)
    return old if old.is_dir() else None


def commit_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Replace ``final`` by ``tmp``; a reader never sees a half-written directory."""
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = old_dir(final)
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    elif old_dir(final).exists():
        old = old_dir(final)  # left by a crash between the renames: removed once the new one is in place
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file name next to ``path`` for writers that take a file name (safetensors, faiss):
    renamed to ``path`` when the ``with`` block ends without error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """``data`` as indented JSON (non-JSON values as ``str``), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line (floats for tensors and numpy scalars)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=float) + "\n")


def truncate_jsonl(path: str | os.PathLike[str], keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite the JSONL file ``path`` atomically with only the records for which ``keep(record)`` is
    true (unparsable lines, e.g. one cut short by a crash, are dropped too); returns how many went."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if keep(record):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped
