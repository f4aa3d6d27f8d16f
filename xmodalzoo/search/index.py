"""``zoo.Index``: search your own images by text or by image with any zoo model.

::

    import xmodalzoo as zoo

    model = zoo.load("runs/vse_shapes/2026-11-22_10-00-00/model")
    index = zoo.Index.build("~/Pictures", model, "pictures.index")   # encodes each image once
    for path, score in index.search(["a dog on the beach"], k=5)[0]:
        print(f"{score:.3f}  {path}")
    index = zoo.Index.open("pictures.index", model)                   # later; a changed model is refused
    index = zoo.Index.build("~/Pictures", "runs/vse_shapes/2026-11-22_10-00-00/model", "pictures.index")
    index = zoo.Index.open("pictures.index")    # built from a folder or name: reloads the model it records
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from ..devices import resolve_device
from ..embeddings import Embedding
from ..errors import ModelMismatchError, SearchIndexError
from ..method import Method
from ..similarity.engine import DEFAULT_MAX_BYTES
from .backends import FaissOptions
from .build import BuildReport, build_index
from .fingerprint import differences, model_fingerprint
from .images import read_image
from .layout import FORMAT, IndexLayout
from .searcher import Searcher


class Hit(NamedTuple):
    """One search result: the image's path and its score under the model's similarity (higher = better)."""

    path: Path
    score: float


def resolve_model(model: Method | str | os.PathLike[str], device: torch.device) -> tuple[Method, str | None]:
    """The model and the reference an index records for it (a folder's absolute path or a pretrained
    name; None for a model object, which :meth:`Index.open` then needs to be given again)."""
    if isinstance(model, Method):
        return model.to(device).eval(), None
    from ..hub.load import load

    text = str(model)
    path = Path(os.path.expanduser(text))
    reference = str(path.resolve()) if path.is_dir() else text
    return load(reference, device=device), reference


class Index:
    """A folder of images encoded once by a model, searchable by text (:meth:`search`) or image (:meth:`search_images`).

    Build one with :meth:`build`, reopen it with :meth:`open`.  The similarity is the model's own;
    how each kind is searched (and how exactly) is in ``docs/search.md``.
    """

    def __init__(self, directory: str | os.PathLike[str], meta: dict[str, Any], embeddings: Embedding,
                 model: Method, *, device: torch.device, backend: str = "engine",
                 max_bytes: int = DEFAULT_MAX_BYTES, faiss_options: FaissOptions | None = None) -> None:
        self.directory = Path(directory)
        self.meta = meta
        self.embeddings = embeddings
        self.model = model
        self.device = device
        root = Path(meta["image_root"])
        self.paths: list[Path] = [root / p for p in meta["images"]]
        self.searcher = Searcher(model.similarity, embeddings, backend=backend, device=device,
                                 max_bytes=max_bytes, faiss_options=faiss_options)
        self.report: BuildReport | None = None

    # ------------------------------------------------------------------------------------------ build / open

    @classmethod
    def build(cls, image_folder: str | os.PathLike[str], model: Method | str | os.PathLike[str],
              out_dir: str | os.PathLike[str], *, batch_size: int = 64, device: str | torch.device = "auto",
              shard_size: int = 1024, progress: bool | None = None, backend: str = "engine") -> "Index":
        """Encode every image below ``image_folder`` with ``model`` into the index folder ``out_dir``.

        ``model`` is a :class:`Method` or what :func:`zoo.load` takes (a model folder, a pretrained
        name); given as a name or folder it is recorded, so :meth:`open` can reload it.  Images are
        read in sorted order, ``batch_size`` at a time, and written in shards of ``shard_size``: an
        interrupted build resumes from its last shard.  Unreadable images are skipped and listed in
        ``out_dir/unreadable.tsv``.  ``progress``: None = a bar on a terminal and plain lines
        otherwise, False = silent.  The summary line is printed to stderr unless ``progress`` is False.
        """
        dev = resolve_device(device)
        method, reference = resolve_model(model, dev)
        fingerprint = model_fingerprint(method)
        report = build_index(method, reference, image_folder, out_dir, batch_size=batch_size, device=dev,
                             shard_size=shard_size, progress=progress, fingerprint=fingerprint)
        if progress is not False:
            import sys

            print(report.summary(Path(out_dir)), file=sys.stderr, flush=True)
        index = cls.open(out_dir, model=method, device=dev, backend=backend)
        index.report = report
        return index

    @classmethod
    def open(cls, directory: str | os.PathLike[str], model: Method | str | os.PathLike[str] | None = None, *,
             device: str | torch.device = "cpu", backend: str = "engine", max_bytes: int = DEFAULT_MAX_BYTES,
             faiss_options: FaissOptions | None = None) -> "Index":
        """Reopen an index folder; ``model`` None reloads the model it records.

        A model whose config, weights or tokenizer differ from those the index was built with is
        refused (:class:`~xmodalzoo.errors.ModelMismatchError`).  ``backend``: ``engine`` (brute
        force, default), ``faiss-flat``, ``faiss-ivf`` or ``faiss-hnsw`` (see ``docs/search.md``).
        """
        layout = IndexLayout(directory)
        meta = read_meta(layout)
        dev = resolve_device(device)
        recorded = meta["model"]
        if model is None:
            if not recorded.get("reference"):
                raise SearchIndexError(f"{layout}: the index records no model reference (it was built from a model "
                                       f"object); pass the model: Index.open(dir, model=...) or --model")
            model = recorded["reference"]
        method, _ = resolve_model(model, dev)
        changed = differences(recorded, model_fingerprint(method))
        if changed:
            ref = recorded.get("reference") or "its model"
            raise ModelMismatchError(
                f"{layout}: the model's {' and '.join(changed)} differ from the ones the index was built with "
                f"({recorded.get('method')}, {ref}); rebuild the index with this model (zoo index build)")
        try:
            embeddings = Embedding.load(layout.embeddings)
        except (OSError, ValueError) as exc:
            raise SearchIndexError(f"{layout.embeddings}: unreadable index embeddings ({exc})") from None
        if len(embeddings) != len(meta["images"]):
            raise SearchIndexError(f"{layout}: {len(embeddings)} embeddings for {len(meta['images'])} images; "
                                   "rebuild the index")
        return cls(directory, meta, embeddings, method, device=dev, backend=backend, max_bytes=max_bytes,
                   faiss_options=faiss_options)

    # ------------------------------------------------------------------------------------------ search

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def similarity(self) -> str:
        """The name of the similarity the index scores with (the model's)."""
        return str(self.meta["similarity"])

    @property
    def exact(self) -> bool:
        """Whether searches equal brute force for this similarity and backend (see ``docs/search.md``)."""
        return self.searcher.exact

    def search_embeddings(self, query: Embedding, k: int = 10, *, candidates: int | None = None,
                          brute_force: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and image indices (N, k) for query embeddings (rows of :attr:`paths`)."""
        return self.searcher.topk(query, k, candidates=candidates, brute_force=brute_force)

    def search(self, texts: str | Sequence[str], k: int = 10, *, candidates: int | None = None) -> list[list[Hit]]:
        """The ``k`` best images per caption: one list of :class:`Hit` (path, score), best first, per text."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return []
        return self._hits(*self.search_embeddings(self.model.embed_texts(texts), k, candidates=candidates))

    def search_images(self, images: Sequence[Any], k: int = 10, *, candidates: int | None = None) -> list[list[Hit]]:
        """The ``k`` most similar indexed images per query image (a path or a PIL image), scored with the
        model's similarity between two image embeddings."""
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        loaded = [read_image(x) if isinstance(x, (str, os.PathLike)) else x for x in images]
        if not loaded:
            return []
        return self._hits(*self.search_embeddings(self.model.embed_images(loaded), k, candidates=candidates))

    def _hits(self, scores: torch.Tensor, ids: torch.Tensor) -> list[list[Hit]]:
        return [[Hit(self.paths[int(i)], float(s)) for s, i in zip(srow, irow)]
                for srow, irow in zip(scores.tolist(), ids.tolist())]

    def __repr__(self) -> str:
        return (f"Index({str(self.directory)!r}, {len(self)} images, {self.meta['embedding']} embeddings, "
                f"similarity {self.similarity!r}, backend {self.searcher.backend_name!r})")


def read_meta(layout: IndexLayout) -> dict[str, Any]:
    """The ``index.json`` of a complete index folder, or a one-line error saying what is wrong."""
    if not layout.root.is_dir():
        raise SearchIndexError(f"{layout}: no such index folder; build one with zoo index build IMAGE_FOLDER "
                               f"--model MODEL -o {layout}")
    if not layout.meta.is_file():
        what = "an unfinished build (run zoo index build again to resume it)" if layout.shards.is_dir() else \
            "not a search index"
        raise SearchIndexError(f"{layout}: {what}; {layout.meta.name} is missing")
    try:
        meta = json.loads(layout.meta.read_text())
    except json.JSONDecodeError as exc:
        raise SearchIndexError(f"{layout.meta}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise SearchIndexError(f"{layout.meta}: unknown index format {found!r} (expected {FORMAT})")
    return meta
