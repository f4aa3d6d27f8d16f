"""Caption augmentation on padded token-id batches (training only).

Two published schemes, applied to the word tokens of each caption (special tokens such as
``<start>``/``[CLS]`` are never touched):

* ``pcme``: each token is replaced by the unknown/mask token with probability ``mask_prob``, then
  ⌊``delete_ratio`` · length⌋ random tokens are deleted.
* ``vse``: each token is perturbed with probability ``perturb_prob``; a perturbed token is masked
  (share ``mask_share``), replaced by a random word (share ``random_share``) or deleted (the rest).

Randomness comes from torch's global RNG, so ``torch.manual_seed`` makes it reproducible.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from ..config import ComponentConfig


class CaptionAugmentConfig(ComponentConfig):
    """Token-level caption augmentation used when tokenising training captions."""

    style: Literal["none", "pcme", "vse"] = Field(
        "none", description="none; pcme: mask then delete a share; vse: perturb a share (mask/random/delete)"
    )
    mask_prob: float = Field(0.1, ge=0, le=1, description="pcme: probability of replacing a token by the mask token")
    delete_ratio: float = Field(0.1, ge=0, lt=1, description="pcme: share of tokens deleted (rounded down)")
    perturb_prob: float = Field(0.2, ge=0, le=1, description="vse: probability that a token is perturbed")
    mask_share: float = Field(0.5, ge=0, le=1, description="vse: share of perturbed tokens that are masked")
    random_share: float = Field(0.1, ge=0, le=1, description="vse: share of perturbed tokens replaced by a random word")

    @model_validator(mode="after")
    def _shares_fit(self) -> "CaptionAugmentConfig":
        if self.mask_share + self.random_share > 1:
            raise ValueError(
                f"mask_share + random_share must be <= 1 (the rest is deleted), got "
                f"{self.mask_share} + {self.random_share}"
            )
        return self


def augment_ids(
    ids: torch.Tensor,
    mask: torch.Tensor,
    editable: torch.Tensor,
    cfg: CaptionAugmentConfig,
    mask_id: int,
    random_ids: torch.Tensor | None = None,
    pad_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a padded batch; returns new ``(ids, mask)`` (deleted tokens removed, re-padded).

    ``ids``/``mask`` are (B, L); ``editable`` (B, L) bool marks the word tokens that may change;
    ``random_ids`` (V,) the ids a "random word" is drawn from (required by the ``vse`` style).
    """
    if cfg.style == "none":
        return ids, mask
    editable = editable & mask
    u = torch.rand(ids.shape, device=ids.device)
    if cfg.style == "pcme":
        masked = editable & (u < cfg.mask_prob)
        ids = ids.masked_fill(masked, mask_id)
        n_delete = (editable.sum(1).to(torch.float64) * cfg.delete_ratio).floor().long()
        # a random rank among the editable tokens of each row; the n_delete lowest ranks go
        scores = torch.rand(ids.shape, device=ids.device).masked_fill(~editable, float("inf"))
        rank = scores.argsort(1).argsort(1)
        delete = editable & (rank < n_delete[:, None])
    else:
        perturbed = editable & (u < cfg.perturb_prob)
        v = torch.rand(ids.shape, device=ids.device)
        masked = perturbed & (v < cfg.mask_share)
        randomised = perturbed & (v >= cfg.mask_share) & (v < cfg.mask_share + cfg.random_share)
        delete = perturbed & (v >= cfg.mask_share + cfg.random_share)
        ids = ids.masked_fill(masked, mask_id)
        if randomised.any():
            if random_ids is None or random_ids.numel() == 0:
                raise ValueError("the 'vse' caption augmentation needs a non-empty set of random word ids")
            draws = random_ids[torch.randint(len(random_ids), ids.shape, device=ids.device)]
            ids = torch.where(randomised, draws, ids)
    return compact(ids, mask & ~delete, pad_id)


def compact(ids: torch.Tensor, keep: torch.Tensor, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the kept tokens of each row to the front (order preserved) and pad the rest."""
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    ids = ids.gather(1, order)
    lengths = keep.sum(1)
    new_mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
    ids = ids.masked_fill(~new_mask, pad_id)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    return ids[:, :width], new_mask[:, :width]
