"""The dataset interface every loader implements."""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch


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

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def load_image(self, index: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def captions_of(self, image_index: int) -> np.ndarray:
        """Caption indices of one image."""
        return np.flatnonzero(self.caption_to_image == image_index)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
                f"images={self.num_images}, captions={self.num_captions})")
