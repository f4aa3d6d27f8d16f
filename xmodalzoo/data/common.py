"""What every dataset loader shares: the config base, root resolution, the image-file dataset.

Where a dataset lives
---------------------
Each dataset config has ``root``.  When it is null the root is, in order:

1. the dataset's own environment variable, when it has one (``XMODALZOO_COCO_ROOT`` for ``coco`` and
   ``karpathy`` with ``flavour: coco``, ``XMODALZOO_FLICKR30K_ROOT`` / ``XMODALZOO_FLICKR8K_ROOT`` for
   the other Karpathy flavours, ``XMODALZOO_PRECOMP_ROOT`` for ``precomp``);
2. ``$XMODALZOO_DATA_ROOT/<name>``, where ``name`` is the config's ``name`` (each loader has a default,
   e.g. ``coco``; the ``jsonl`` loader has none, so set ``root`` or ``name``).

``~`` and ``$VARS`` are expanded in every path; an unset variable is an error.

Corrupt or missing images
-------------------------
``on_error: raise`` (default) raises :class:`DataError` naming the file and the reason.
``on_error: skip`` drops images whose file is missing when the dataset is built (with their
captions; counted in ``missing_images`` and logged), the training loader drops images that fail
to decode from their batch (see :mod:`xmodalzoo.data.loader`), and evaluation drops them, with their
captions, from the split it evaluates (:func:`xmodalzoo.eval.encode.encode_images`,
:meth:`RetrievalDataset.drop_images`).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import Field, field_validator

from ..config import ComponentConfig
from ..errors import DataError
from .base import RetrievalDataset

log = logging.getLogger("xmodalzoo.data")

DATA_ROOT_ENV = "XMODALZOO_DATA_ROOT"
LOGICAL_SPLITS: tuple[str, ...] = ("train", "val", "test")
LogicalSplit = Literal["train", "val", "test"]
OnError = Literal["skip", "raise"]


class DatasetConfig(ComponentConfig):
    """Options every dataset loader has."""

    root: str | None = Field(None, description=f"dataset folder; null: the loader's env var or ${DATA_ROOT_ENV}/<name>")
    name: str | None = Field(None, description=f"dataset name in reports; subfolder of ${DATA_ROOT_ENV} when root is null")
    on_error: OnError = Field("raise", description="missing or corrupt image files: raise an error or skip them")


def normalise_split_lists(value: Any) -> Any:
    """Accept ``{train: "train"}`` as well as ``{train: ["train", "restval"]}``."""
    if isinstance(value, dict):
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
    return value


class SplitListConfig(DatasetConfig):
    """A dataset whose file labels every image with a split name."""

    splits: dict[LogicalSplit, list[str]] = Field(
        default_factory=lambda: {"train": ["train"], "val": ["val"], "test": ["test"]},
        description="logical split (train/val/test) -> the split names in the file whose images it takes",
    )

    @field_validator("splits", mode="before")
    @classmethod
    def split_names_as_lists(cls, value: Any) -> Any:
        return normalise_split_lists(value)


def expand_path(path: str | os.PathLike[str], setting: str) -> Path:
    """``path`` with ``~`` and ``$VARS`` expanded; an unset variable is a :class:`DataError`."""
    text = os.path.expanduser(os.path.expandvars(str(path)))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)
    if unset:
        raise DataError(f"{setting} = {str(path)!r} uses the environment variable ${unset[0]}, which is not set")
    return Path(text)


def resolve_root(root: str | None, *, name: str | None, env_var: str | None, loader: str) -> Path:
    """The dataset folder: ``root``, else ``$env_var``, else ``$XMODALZOO_DATA_ROOT/name``; it must exist."""
    if root:
        path, setting = expand_path(root, "data.root"), "data.root"
    elif env_var and os.environ.get(env_var):
        path, setting = expand_path(os.environ[env_var], env_var), f"the environment variable {env_var}"
    elif os.environ.get(DATA_ROOT_ENV) and name:
        path = expand_path(os.environ[DATA_ROOT_ENV], DATA_ROOT_ENV) / name
        setting = f"${DATA_ROOT_ENV}/<data.name> ({DATA_ROOT_ENV}={os.environ[DATA_ROOT_ENV]!r}, name={name!r})"
    else:
        options = ["data.root in the recipe"]
        if env_var:
            options.append(f"the environment variable {env_var}")
        options.append(f"{DATA_ROOT_ENV} (the folder holding <data.name>/)" + ("" if name else " together with data.name"))
        raise DataError(f"no folder given for the {loader!r} dataset: set " + ", or ".join(options))
    if not path.is_dir():
        raise DataError(f"dataset folder {path} of the {loader!r} dataset does not exist; fix {setting}")
    return path


def require_file(path: Path, what: str, setting: str) -> Path:
    """``path`` when it is a file, else a :class:`DataError` naming it and the setting to fix."""
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist; check {setting}")
    return path


def require_split(splits: dict[str, Any], split: str, loader: str) -> Any:
    """The config entry of logical ``split``, or a clear error."""
    if split not in LOGICAL_SPLITS:
        raise DataError(f"unknown split {split!r} for the {loader!r} dataset; expected one of {', '.join(LOGICAL_SPLITS)}")
    if split not in splits:
        raise DataError(f"split {split!r} is not configured for the {loader!r} dataset; "
                        f"add it to data.splits (configured: {', '.join(splits) or 'none'})")
    return splits[split]


def load_rgb(path: str | os.PathLike[str]) -> Any:
    """The image at ``path`` as a decoded PIL RGB image; any failure is a :class:`DataError`."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert decodes the whole file, so truncation shows here
    except FileNotFoundError:
        raise DataError(f"cannot read image {path}: file not found") from None
    except Exception as exc:  # PIL raises several types for corrupt files
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


class ImageFileDataset(RetrievalDataset):
    """Images stored as files, each with its captions (kept contiguous, images in the given order).

    Images without captions are dropped.  Missing files are checked once, here: ``on_error="raise"``
    raises, ``"skip"`` drops them (listed in ``missing_images``) and logs a warning.
    """

    image_kind = "pil"

    def __init__(
        self,
        *,
        name: str,
        split: str,
        paths: Sequence[Path],
        image_ids: Sequence[Any],
        captions: Sequence[Sequence[str]],
        caption_ids: Sequence[Sequence[Any]] | None = None,
        on_error: OnError = "raise",
        source: str = "",
    ) -> None:
        if not (len(paths) == len(image_ids) == len(captions)):
            raise ValueError("paths, image_ids and captions need one entry per image")
        if caption_ids is None:
            caption_ids = [[f"{iid}#{j}" for j in range(len(caps))] for iid, caps in zip(image_ids, captions)]
        self.name, self.split, self.source = name, split, source
        self.on_error = on_error
        keep = [i for i, caps in enumerate(captions) if len(caps) > 0]
        missing = [i for i in keep if not Path(paths[i]).is_file()]
        self.missing_images: list[str] = [str(paths[i]) for i in missing]
        if missing:
            first = ", ".join(self.missing_images[:5])
            if on_error == "raise":
                raise DataError(
                    f"{len(missing)} image file(s) listed in {source or name} do not exist, e.g. {first}; "
                    f"fix the dataset root (data.root) or set data.on_error: skip to drop them"
                )
            log.warning("%s/%s: skipping %d missing image file(s) listed in %s, e.g. %s",
                        name, split, len(missing), source or name, first)
            dropped = set(missing)
            keep = [i for i in keep if i not in dropped]
        self.paths: list[Path] = [Path(paths[i]) for i in keep]
        self.image_ids = [image_ids[i] for i in keep]
        self.captions = [c for i in keep for c in captions[i]]
        self.caption_ids = [c for i in keep for c in caption_ids[i]]
        counts = np.array([len(captions[i]) for i in keep], dtype=np.int64)
        self.caption_to_image = np.repeat(np.arange(len(keep), dtype=np.int64), counts)
        if len(self.caption_ids) != len(self.captions):
            raise DataError(f"{source or name}: caption ids and captions differ in number")
        if not self.image_ids:
            raise DataError(f"{source or name}: split {split!r} has no images with captions")

    def load_image(self, index: int) -> Any:
        """Image ``index`` as a PIL RGB image (:class:`DataError` when unreadable)."""
        return load_rgb(self.paths[index])

    def _select_images(self, keep: np.ndarray) -> None:
        self.paths = [self.paths[i] for i in keep.tolist()]

    def image_path(self, index: int) -> Path:
        return self.paths[index]
