"""The dataset interface every loader implements."""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch

from ..errors import DataError


class RetrievalDataset:
    """Images (or precomputed region features) and captions of one split.

    Attributes every loader fills:

    * ``name``, ``split``;
    * ``image_ids`` (stable ids, one per image) and ``caption_ids`` (one per caption);
    * ``captions`` (list of str) and ``caption_to_image`` (int64 array: caption -> image index);
    * ``image_kind``: ``"pil"`` (``load_image`` returns a PIL image) or ``"features"`` (a float
      array, e.g. 36 × 2048 regions).

    Optional (None when the dataset does not know them):

    * ``positives``: exhaustive (num_captions, num_images) bool tensor of every true match;
    * ``image_labels`` / ``caption_labels``: multi-hot (N, C) tensors for PMRP.

    ``on_error`` (``"raise"`` or ``"skip"``) says what to do with an image that cannot be read;
    with ``skip``, evaluation removes such images (and their captions) with :meth:`drop_images`.
    """

    name: str = ""
    split: str = ""
    image_kind: Literal["pil", "features"] = "pil"
    image_ids: Sequence[Any]
    caption_ids: Sequence[Any]
    captions: Sequence[str]
    caption_to_image: np.ndarray
    positives: torch.Tensor | None = None
    image_labels: torch.Tensor | None = None
    caption_labels: torch.Tensor | None = None
    on_error: Literal["raise", "skip"] = "raise"

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def load_image(self, index: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def drop_images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Remove images ``indices`` and their captions from this dataset, in place.

        Every per-image and per-caption attribute is subset consistently (ids, captions,
        ``caption_to_image`` renumbered, ``positives``, labels, ``caption_classes``), keeping the
        order of the rest.  Returns the kept image indices (in the old numbering).  Loaders opt in by
        implementing :meth:`_select_images` for their own per-image storage.
        """
        n = self.num_images
        bad = np.unique(np.asarray(indices, dtype=np.int64))
        if bad.size and (bad[0] < 0 or bad[-1] >= n):
            raise IndexError(f"image indices to drop must lie in [0, {n})")
        keep = np.setdiff1d(np.arange(n, dtype=np.int64), bad)
        if bad.size == 0:
            return keep
        if keep.size == 0:
            raise DataError(f"{self.name or type(self).__name__}/{self.split}: no readable image is left")
        c2i = np.asarray(self.caption_to_image, dtype=np.int64)
        kept_captions = np.flatnonzero(np.isin(c2i, keep))
        new_index = np.full(n, -1, dtype=np.int64)
        new_index[keep] = np.arange(keep.size, dtype=np.int64)
        positives = self.positives
        classes = getattr(self, "caption_classes", None)
        self._select_images(keep)
        self.image_ids = [self.image_ids[i] for i in keep.tolist()]
        self.captions = [self.captions[c] for c in kept_captions.tolist()]
        self.caption_ids = [self.caption_ids[c] for c in kept_captions.tolist()]
        self.caption_to_image = new_index[c2i[kept_captions]]
        k_img, k_cap = torch.from_numpy(keep), torch.from_numpy(kept_captions)
        if positives is not None:
            self.positives = positives[k_cap][:, k_img]
        if self.image_labels is not None:
            self.image_labels = self.image_labels[k_img]
        if self.caption_labels is not None:
            self.caption_labels = self.caption_labels[k_cap]
        if classes is not None and len(classes) == len(c2i):
            self.caption_classes = np.asarray(classes)[kept_captions]
        return keep

    def _select_images(self, keep: np.ndarray) -> None:
        """Keep only images ``keep`` (old indices, sorted) in the loader's own per-image storage."""
        raise DataError(f"{type(self).__name__} cannot drop unreadable images; set data.on_error: raise")

    def captions_of(self, image_index: int) -> np.ndarray:
        """Caption indices of one image."""
        return np.flatnonzero(self.caption_to_image == image_index)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
                f"images={self.num_images}, captions={self.num_captions})")
