"""Word-level tokenizer with a vocabulary built from training captions (VSE++/PCME/PVSE style)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import torch
from pydantic import Field

from ..config import ComponentConfig
from ..data.batch import TextBatch
from .augment import CaptionAugmentConfig, augment_ids
from .tokenizers import Tokenizer

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
#: special tokens, in id order (``<pad>`` must be 0: batches are padded with 0)
SPECIALS: tuple[str, ...] = (PAD, START, END, UNK)
_WORD = re.compile(r"[\w']+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``."""
    return _WORD.findall(text.lower())


class WordTokenizerConfig(ComponentConfig):
    """What a saved word tokenizer records besides its vocabulary (``vocab.json``)."""

    augment: CaptionAugmentConfig = Field(default_factory=CaptionAugmentConfig)
    add_start_end: bool = True
    max_length: int | None = None


class WordTokenizer(Tokenizer):
    """Maps captions to word ids: ``<start> w1 ... wn <end>``, unknown words to ``<unk>``."""

    type: ClassVar[str] = "word"

    def __init__(
        self,
        words: Sequence[str],
        augment: CaptionAugmentConfig | None = None,
        add_start_end: bool = True,
        max_length: int | None = None,
    ) -> None:
        """``words`` lists the vocabulary in id order and must start with :data:`SPECIALS`."""
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a word vocabulary must start with {list(SPECIALS)}, got {list(words[:len(SPECIALS)])}")
        if len(set(words)) != len(words):
            dup = sorted(w for w, c in Counter(words).items() if c > 1)[:5]
            raise ValueError(f"duplicate words in the vocabulary: {dup}")
        if max_length is not None and max_length < (3 if add_start_end else 1):
            raise ValueError(f"max_length={max_length} leaves no room for a word")
        self.words = list(words)
        self.word_to_id = {w: i for i, w in enumerate(self.words)}
        self.augment = augment or CaptionAugmentConfig()
        self.add_start_end = add_start_end
        self.max_length = max_length

    @classmethod
    def build(
        cls, captions: Iterable[str], min_count: int = 1, augment: CaptionAugmentConfig | None = None,
        add_start_end: bool = True, max_length: int | None = None,
    ) -> "WordTokenizer":
        """Vocabulary of the words seen at least ``min_count`` times (most frequent first)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(w for c in captions for w in split_words(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))
        if not kept:
            raise ValueError(f"no word occurs at least min_count={min_count} times in the training captions")
        return cls([*SPECIALS, *kept], augment, add_start_end, max_length)

    @classmethod
    def from_word2idx(cls, word2idx: Mapping[str, int], **kwargs: object) -> "WordTokenizer":
        """Tokenizer from an id mapping as stored by released checkpoints (ids must be 0..N-1)."""
        ids = sorted(word2idx.values())
        if ids != list(range(len(ids))):
            raise ValueError("word2idx ids must be exactly 0..N-1")
        words = sorted(word2idx, key=word2idx.__getitem__)
        return cls(words, **kwargs)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return self.word_to_id[UNK]

    def encode(self, text: str) -> list[int]:
        """Ids of one caption (with ``<start>``/``<end>`` when enabled, truncated to ``max_length``)."""
        ids = [self.word_to_id.get(w, self.unk_id) for w in split_words(text)]
        if self.max_length is not None:
            ids = ids[: self.max_length - (2 if self.add_start_end else 0)]
        if self.add_start_end:
            ids = [self.word_to_id[START], *ids, self.word_to_id[END]]
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of an id sequence (padding dropped)."""
        return [self.words[int(i)] for i in ids if int(i) != self.pad_id]

    def __call__(self, texts: Sequence[str], train: bool = False) -> TextBatch:
        """Pad the captions' ids into a batch; augment them when ``train`` is true."""
        if isinstance(texts, str):
            raise TypeError("pass a list of captions, not a single string")
        encoded = [self.encode(t) for t in texts]
        width = max((len(e) for e in encoded), default=1) or 1
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = torch.tensor(e, dtype=torch.long)
        mask = torch.arange(width)[None, :] < torch.tensor([len(e) for e in encoded])[:, None]
        if train and self.augment.style != "none":
            editable = mask & (ids != self.word_to_id[START]) & (ids != self.word_to_id[END])
            ids, mask = augment_ids(ids, mask, editable, self.augment, mask_id=self.unk_id,
                                    random_ids=torch.arange(len(SPECIALS), len(self)), pad_id=self.pad_id)
        return TextBatch(ids, mask)

    def options(self) -> dict[str, Any]:
        return {"augment": self.augment.model_dump(), "add_start_end": self.add_start_end,
                "max_length": self.max_length}

    def save_files(self, directory: Path) -> None:
        """Write ``vocab.json``: the words in id order."""
        (directory / VOCAB).write_text(json.dumps(self.words, ensure_ascii=False))


VOCAB = "vocab.json"


def load_word_tokenizer(cfg: WordTokenizerConfig, *, directory: Path, **_: Any) -> WordTokenizer:
    """Reload a word tokenizer saved by :meth:`WordTokenizer.save` (its ``vocab.json`` and options)."""
    vocab_path = Path(directory) / VOCAB
    if not vocab_path.is_file():
        raise FileNotFoundError(f"{vocab_path} not found (a saved word tokenizer needs it)")
    return WordTokenizer(json.loads(vocab_path.read_text()), cfg.augment, cfg.add_start_end, cfg.max_length)
