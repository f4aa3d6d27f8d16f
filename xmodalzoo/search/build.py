"""Encoding an image folder once into an index folder: shards, resuming, unreadable images.

The sorted image list is cut into shards of ``shard_size`` images.  Each shard is encoded, then
written atomically to ``shards/NNNNN.safetensors`` with, in its metadata, the paths it covers, the
images it could not read (and why) and the model's fingerprint.  A rerun keeps every shard whose
paths and fingerprint match and encodes only the others, so an interrupted build resumes where it
stopped.  At the end the shards are joined into ``embeddings.safetensors``, the skipped images go to
``unreadable.tsv``, and ``index.json`` is written last (its presence marks a complete index); then the
shards are removed.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch

from ..embeddings import EMBEDDING_TYPES, Embedding
from ..errors import DataError, SearchIndexError
from ..files import atomic_path, write_json_atomic, write_text_atomic
from ..method import Method
from ..version import __version__
from .images import IMAGE_SUFFIXES, list_images, try_read_image
from .layout import FORMAT, IndexLayout


@dataclass
class BuildReport:
    """What a build did: images encoded now, images reused from shards of an earlier run, and the
    unreadable images skipped (path relative to the folder, reason)."""

    encoded: int = 0
    reused: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    up_to_date: bool = False

    def summary(self, index_dir: Path) -> str:
        if self.up_to_date:
            return f"index {index_dir} is up to date ({self.reused} images)"
        line = f"indexed {self.encoded + self.reused} images into {index_dir}"
        if self.reused:
            line += f" ({self.reused} from an earlier, interrupted build)"
        if self.unreadable:
            line += f"; skipped {len(self.unreadable)} unreadable image(s), listed in {IndexLayout(index_dir).unreadable}"
        return line


class Progress:
    """A progress bar on a terminal, plain ``indexing: N/M images`` lines otherwise (or nothing)."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        self.total = total
        self.enabled = enabled is not False
        self.bar: Any = None
        self.done = 0
        if self.enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.bar = Bar(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           transient=True)
            self.task = self.bar.add_task("indexing", total=total)
            self.bar.start()

    def advance(self, n: int, *, line: bool) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.advance(self.task, n)
        elif self.enabled and line:
            print(f"indexing: {self.done}/{self.total} images", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def save_shard(path: Path, emb: Embedding | None, paths: list[str], encoded: list[str],
               skipped: list[tuple[str, str]], fingerprint: dict[str, Any]) -> None:
    """Write one shard atomically (a temporary file in the same folder, then a rename)."""
    from safetensors.torch import save_file

    meta = {"paths": json.dumps(paths), "encoded": json.dumps(encoded), "skipped": json.dumps(skipped),
            "fingerprint": json.dumps(fingerprint, sort_keys=True), "embedding": emb.kind if emb is not None else ""}
    tensors = {k: v.contiguous().cpu() for k, v in emb.tensors().items()} if emb is not None else {}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_shard(path: Path, paths: list[str], fingerprint: dict[str, Any]) -> tuple[Embedding | None, list[str], list[tuple[str, str]]] | None:
    """(embeddings, encoded paths, skipped) of a shard written for exactly ``paths`` by the same model, else None."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if json.loads(meta.get("paths", "null")) != paths:
                return None
            if json.loads(meta.get("fingerprint", "null")) != json.loads(json.dumps(fingerprint, sort_keys=True)):
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            encoded = json.loads(meta["encoded"])
            skipped = [tuple(x) for x in json.loads(meta["skipped"])]
            kind = meta.get("embedding", "")
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # a damaged shard is encoded again
    emb = EMBEDDING_TYPES[kind](**tensors) if kind in EMBEDDING_TYPES else None
    return emb, encoded, skipped  # type: ignore[return-value]


@torch.no_grad()
def encode_shard(method: Method, root: Path, paths: list[str], batch_size: int, device: torch.device,
                 progress: Progress) -> tuple[Embedding | None, list[str], list[tuple[str, str]]]:
    """Embeddings (CPU) of the readable images of one shard, their paths, and the unreadable ones."""
    transform = method.image_transform(train=False)
    parts: list[Embedding] = []
    encoded: list[str] = []
    skipped: list[tuple[str, str]] = []
    for batch in chunks(paths, batch_size):
        pixels, names = [], []
        for rel in batch:
            image, reason = try_read_image(root / rel)
            if image is None:
                skipped.append((rel, str(reason)))
                continue
            pixels.append(transform(image))
            names.append(rel)
        if pixels:
            parts.append(method.encode_image(torch.stack(pixels).to(device)).detach().to("cpu"))
            encoded.extend(names)
        progress.advance(len(batch), line=False)
    return (Embedding.cat(parts) if parts else None), encoded, skipped


def build_index(method: Method, reference: str | None, image_folder: str | Path, out_dir: str | Path, *,
                batch_size: int = 64, device: torch.device, shard_size: int = 1024,
                progress: bool | None = None, fingerprint: dict[str, Any]) -> BuildReport:
    """Encode ``image_folder`` with ``method`` into the index folder ``out_dir`` (see the module docstring)."""
    if getattr(method.image_encoder, "input_kind", "pil") != "pil":
        raise SearchIndexError(f"the model's image encoder reads precomputed features "
                               f"({method.image_encoder.input_kind}), not image files: it cannot index a folder")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}")
    root = Path(image_folder).expanduser().resolve()
    paths = list_images(root)
    if not paths:
        raise DataError(f"{root}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)})")
    layout = IndexLayout(out_dir)
    report = BuildReport()
    if layout.meta.is_file():
        meta = json.loads(layout.meta.read_text())
        listed = sorted([*meta.get("images", []), *(p for p, _ in meta.get("unreadable", []))])
        same_model = {k: meta.get("model", {}).get(k) for k in fingerprint} == fingerprint
        if same_model and meta.get("image_root") == str(root) and listed == paths:
            report.up_to_date, report.reused = True, len(meta["images"])
            return report
        layout.meta.unlink()  # stale: the index is incomplete until this build writes it again
    layout.root.mkdir(parents=True, exist_ok=True)
    method.eval()
    bar = Progress(len(paths), progress)
    parts: list[Embedding] = []
    encoded_all: list[str] = []
    try:
        for number, shard_paths in enumerate(chunks(paths, shard_size)):
            loaded = load_shard(layout.shard(number), shard_paths, fingerprint)
            if loaded is not None:
                report.reused += len(loaded[1])
                bar.advance(len(shard_paths), line=True)
            else:
                loaded = encode_shard(method, root, shard_paths, batch_size, device, bar)
                save_shard(layout.shard(number), loaded[0], shard_paths, loaded[1], loaded[2], fingerprint)
                report.encoded += len(loaded[1])
                bar.advance(0, line=True)
            emb, encoded, skipped = loaded
            if emb is not None:
                parts.append(emb)
            encoded_all.extend(encoded)
            report.unreadable.extend(skipped)
    finally:
        bar.close()
    if not parts:
        _write_unreadable(layout, report.unreadable)
        raise DataError(f"{root}: none of the {len(paths)} image files could be read (reasons in {layout.unreadable})")
    embeddings = Embedding.cat(parts)
    with atomic_path(layout.embeddings) as tmp:
        embeddings.save(tmp)
    _write_unreadable(layout, report.unreadable)
    cfg = method.config
    write_json_atomic(layout.meta, {
        "format": FORMAT,
        "xmodalzoo_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"reference": reference, **fingerprint},
        "similarity": getattr(getattr(cfg, "similarity", None), "type", type(method.similarity).__name__),
        "embedding": embeddings.kind,
        "image_root": str(root),
        "images": encoded_all,
        "unreadable": [list(x) for x in report.unreadable],
    })
    shutil.rmtree(layout.shards, ignore_errors=True)
    return report


def _write_unreadable(layout: IndexLayout, unreadable: list[tuple[str, str]]) -> bool:
    """Write ``unreadable.tsv`` (removed when nothing was skipped); True when something was."""
    if not unreadable:
        layout.unreadable.unlink(missing_ok=True)
        return False
    write_text_atomic(layout.unreadable, "".join(f"{p}\t{reason}\n" for p, reason in unreadable))
    return True
