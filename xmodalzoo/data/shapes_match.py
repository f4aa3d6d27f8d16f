"""Exact caption–image ground truth of the shapes benchmark.

A caption matches an image iff each object it describes can be given a *distinct* object of the
image carrying every attribute the caption names for it (a bipartite matching).  With at most four
objects per side the matching is decided by a 65,536-entry table indexed by the 4 × 4 compatibility
bits of the pair, so the whole (captions × images) matrix is a few table gathers.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from .shapes_scenes import ATTRIBUTE_SIZES

SLOTS = 4  # objects per side the matching table supports
_RADICES = np.array([s + 1 for s in ATTRIBUTE_SIZES])  # attribute value + 1; 0 = wildcard
NUM_CONSTRAINTS = int(np.prod(_RADICES))
ANY = NUM_CONSTRAINTS  # id of an unused caption slot: compatible with every image slot, even empty
NUM_CODES = int(np.prod(ATTRIBUTE_SIZES))
ABSENT = NUM_CODES  # code of an empty image slot


def _matching_table() -> np.ndarray:
    """(65536,) bool: does the 4 × 4 bit matrix (bit 4j + k = caption slot j fits image slot k)
    contain a perfect matching?"""
    masks = np.arange(1 << (SLOTS * SLOTS), dtype=np.int64)
    perms = np.array(list(itertools.permutations(range(SLOTS))))  # (24, 4)
    bits = (masks[:, None, None] >> (4 * np.arange(SLOTS)[None, None, :] + perms[None])) & 1
    return bits.all(axis=2).any(axis=1)


MATCHING_TABLE = _matching_table()


def _pad_slots(attrs: np.ndarray) -> np.ndarray:
    if attrs.shape[1] > SLOTS:
        raise ValueError(f"exact matching supports at most {SLOTS} objects per side, got {attrs.shape[1]}")
    pad = np.full((attrs.shape[0], SLOTS - attrs.shape[1], attrs.shape[2]), -1, dtype=attrs.dtype)
    return np.concatenate([attrs, pad], axis=1)


def constraint_ids(caption_attributes: np.ndarray, caption_num_objects: np.ndarray) -> np.ndarray:
    """(C, 4) int64 ids of each caption slot's constraint (attribute values with wildcards)."""
    attrs = _pad_slots(caption_attributes).astype(np.int64) + 1
    ids = np.zeros(attrs.shape[:2], dtype=np.int64)
    for a, radix in enumerate(_RADICES):
        ids = ids * radix + attrs[..., a]
    unused = np.arange(SLOTS)[None, :] >= caption_num_objects[:, None]
    return np.where(unused, ANY, ids)


def object_codes(objects: np.ndarray) -> np.ndarray:
    """(N, 4) int64 code of each image object (its five attributes), ABSENT for empty slots."""
    attrs = _pad_slots(objects).astype(np.int64)
    codes = np.zeros(attrs.shape[:2], dtype=np.int64)
    for a, size in enumerate(ATTRIBUTE_SIZES):
        codes = codes * size + attrs[..., a]
    return np.where(attrs[..., 0] < 0, ABSENT, codes)


def _constraint_code_table() -> np.ndarray:
    """(NUM_CONSTRAINTS + 1, NUM_CODES + 1) bool: does a constraint accept an object code?"""
    cons = np.stack(np.unravel_index(np.arange(NUM_CONSTRAINTS), tuple(_RADICES)), axis=1) - 1
    objs = np.stack(np.unravel_index(np.arange(NUM_CODES), ATTRIBUTE_SIZES), axis=1)
    ok = ((cons[:, None, :] < 0) | (cons[:, None, :] == objs[None, :, :])).all(axis=2)
    table = np.zeros((NUM_CONSTRAINTS + 1, NUM_CODES + 1), dtype=bool)
    table[:NUM_CONSTRAINTS, :NUM_CODES] = ok
    table[ANY] = True
    return table


_CONSTRAINT_CODE_TABLE: np.ndarray | None = None


class PositiveMatcher:
    """Decides which captions match which images, exactly, for any block of the matrix."""

    def __init__(
        self, objects: np.ndarray, caption_attributes: np.ndarray, caption_num_objects: np.ndarray
    ) -> None:
        global _CONSTRAINT_CODE_TABLE
        if _CONSTRAINT_CODE_TABLE is None:
            _CONSTRAINT_CODE_TABLE = _constraint_code_table()
        self.cons = constraint_ids(caption_attributes, caption_num_objects)
        used, inverse = np.unique(self.cons, return_inverse=True)
        self.local = inverse.reshape(self.cons.shape)
        codes = object_codes(objects)
        accept = _CONSTRAINT_CODE_TABLE[used]  # (U, codes)
        # nibble[u, i]: bit k set when constraint u accepts object k of image i
        self.nibble = np.zeros((used.size, codes.shape[0]), dtype=np.uint16)
        for k in range(SLOTS):
            self.nibble |= accept[:, codes[:, k]].astype(np.uint16) << k

    @property
    def shape(self) -> tuple[int, int]:
        return self.cons.shape[0], self.nibble.shape[1]

    def block(
        self, captions: np.ndarray | slice | None = None, images: np.ndarray | slice | None = None
    ) -> np.ndarray:
        """(len(captions), len(images)) bool numpy matrix of exact matches."""
        local = self.local[captions if captions is not None else slice(None)]
        nibble = self.nibble if images is None else self.nibble[:, images]
        mask = nibble[local[:, 0]].copy()
        for j in range(1, SLOTS):
            mask |= nibble[local[:, j]] << (4 * j)
        return MATCHING_TABLE[mask]

    def matrix(self, chunk_pairs: int = 1 << 24) -> torch.Tensor:
        """The full (num_captions, num_images) torch.bool positives matrix."""
        num_captions, num_images = self.shape
        out = torch.empty((num_captions, num_images), dtype=torch.bool)
        rows = max(1, chunk_pairs // max(num_images, 1))
        for start in range(0, num_captions, rows):
            sl = slice(start, start + rows)
            out[sl] = torch.from_numpy(self.block(sl))
        return out
