"""Captions of the shapes benchmark: which objects and attributes a caption mentions, and its text.

A caption describes a random non-empty subset of its image's objects, each by a random non-empty
subset of its attributes.  The structured form is an (C, M, 5) int8 array in the order of
:data:`~xmodalzoo.data.shapes_scenes.ATTRIBUTES`: the attribute code where mentioned, ``-1`` where
not; slots at or beyond the caption's object count are all ``-1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes_scenes import COLOURS, SHAPE, SHAPES, SIZES

#: chance that a mentioned object's attribute is named, in ATTRIBUTES order
MENTION_PROBABILITY = np.array([0.55, 0.55, 0.3, 0.3, 0.3])

ROW_PHRASES = ("at the top", "in the middle row", "at the bottom")
COLUMN_PHRASES = ("on the left", "in the centre column", "on the right")
#: [row][column] phrases when both are mentioned
CELL_PHRASES = (
    ("in the top-left corner", "at the top centre", "in the top-right corner"),
    ("on the middle left", "in the centre", "on the middle right"),
    ("in the bottom-left corner", "at the bottom centre", "in the bottom-right corner"),
)
#: sentence frames around the list of object phrases
TEMPLATES = (
    "{}",
    "a picture of {}",
    "an image with {}",
    "there is {}",
    "this scene shows {}",
    "i can see {}",
    "{} on a grey background",
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: frame used (sometimes) when two or more objects are mentioned
COUNT_TEMPLATE = "{} shapes: {}"
NOUNS = ("shape", "object")


@dataclass
class CaptionSpecs:
    """Structured captions: ``attributes`` (C, M, 5) int8, ``object_index`` (C, M) int8 (image slot
    described by each caption slot, -1 unused) and ``num_objects`` (C,) int64."""

    attributes: np.ndarray
    object_index: np.ndarray
    num_objects: np.ndarray


def sample_caption_specs(
    objects: np.ndarray, captions_per_image: int, rng: np.random.Generator
) -> CaptionSpecs:
    """Choose, for every caption, the objects it mentions and which of their attributes."""
    n, m = objects.shape[:2]
    image = np.repeat(np.arange(n), captions_per_image)
    present = objects[image, :, SHAPE] >= 0
    count = present.sum(axis=1)
    num_mentioned = 1 + np.floor(rng.random(image.size) * count).astype(np.int64)
    # a random order of the present slots; the first ``num_mentioned`` are described
    keys = np.where(present, rng.random(present.shape), np.inf)
    order = np.argsort(keys, axis=1)
    used = np.arange(m)[None, :] < num_mentioned[:, None]
    mention = rng.random((image.size, m, 5)) < MENTION_PROBABILITY
    forced = rng.integers(0, 5, size=(image.size, m))
    empty = ~mention.any(axis=2)
    mention[empty, forced[empty]] = True
    mention &= used[..., None]
    values = objects[image[:, None], order]
    attributes = np.where(mention, values, -1).astype(np.int8)
    object_index = np.where(used, order, -1).astype(np.int8)
    return CaptionSpecs(attributes, object_index, num_mentioned)


def caption_texts(specs: CaptionSpecs, rng: np.random.Generator) -> list[str]:
    """Render every structured caption as an English sentence (lower case)."""
    c, m = specs.attributes.shape[:2]
    template = rng.integers(0, len(TEMPLATES), size=c)
    use_count = rng.random(c) < 0.25
    noun = rng.integers(0, len(NOUNS), size=(c, m))
    something = rng.random((c, m)) < 0.5
    attributes = specs.attributes.tolist()
    texts = []
    for i in range(c):
        phrases: list[str] = []
        for j in range(int(specs.num_objects[i])):
            phrase = object_phrase(attributes[i][j], NOUNS[noun[i, j]], bool(something[i, j]))
            if phrase in phrases:
                phrase = "another " + phrase.split(" ", 1)[1] if not phrase.startswith("something") \
                    else phrase.replace("something", "something else", 1)
            phrases.append(phrase)
        listed = join_phrases(phrases)
        if use_count[i] and len(phrases) > 1:
            texts.append(COUNT_TEMPLATE.format(NUMBER_WORDS[len(phrases)], listed))
        else:
            texts.append(TEMPLATES[template[i]].format(listed))
    return texts


def object_phrase(attrs: list[int], noun: str = "shape", something: bool = False) -> str:
    """One object's phrase, e.g. ``"a large red circle on the left"`` or ``"something yellow"``.

    ``attrs`` holds the five attribute codes (-1 = not mentioned); ``noun`` names an object whose
    shape is not mentioned, and ``something`` prefers ``"something <colour>"`` when only the
    colour (and maybe the position) is known.
    """
    shape, colour, size, row, column = attrs
    position = position_phrase(row, column)
    if shape < 0 and size < 0 and colour >= 0 and something:
        words = ["something", COLOURS[colour]]
    elif shape < 0 and size < 0 and colour < 0 and something:
        words = ["something"]
    else:
        words = [w for w in (SIZES[size] if size >= 0 else "", COLOURS[colour] if colour >= 0 else "",
                             SHAPES[shape] if shape >= 0 else noun) if w]
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    if position:
        words.append(position)
    return " ".join(words)


def position_phrase(row: int, column: int) -> str:
    """Phrase for a grid row and/or column (-1 = not mentioned); empty when neither is."""
    if row >= 0 and column >= 0:
        return CELL_PHRASES[row][column]
    if row >= 0:
        return ROW_PHRASES[row]
    if column >= 0:
        return COLUMN_PHRASES[column]
    return ""


def join_phrases(phrases: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


__all__ = [
    "CaptionSpecs", "caption_texts", "join_phrases", "object_phrase", "position_phrase",
    "sample_caption_specs",
]
