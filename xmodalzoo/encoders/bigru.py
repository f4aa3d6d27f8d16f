"""Word embeddings + (bidirectional) GRU text encoder, as used by VSE++, PCME, PVSE and DivE."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import ComponentConfig
from ..data.batch import TextBatch
from .augment import CaptionAugmentConfig
from .base import EncoderOutput, TextEncoder
from .vocab import WordTokenizer

log = logging.getLogger(__name__)


class BiGRUConfig(ComponentConfig):
    """Options of the word-embedding + GRU text encoder."""

    word_dim: int = Field(300, gt=0, description="word embedding size")
    hidden_dim: int = Field(512, gt=0, description="GRU hidden size per direction")
    num_layers: int = Field(1, ge=1, description="stacked GRU layers")
    bidirectional: bool = Field(True, description="run a backward GRU too")
    combine: Literal["concat", "mean"] = Field(
        "concat", description="how the two directions merge: concat (PCME/PVSE, 2H) or mean (VSE∞/DivE, H)"
    )
    global_feature: Literal["final_states", "last_token"] = Field(
        "final_states",
        description="pooled feature: the final hidden states, or the GRU output at the last real token (PVSE legacy)",
    )
    glove: str | None = Field(
        None, description="GloVe-format text file ('word v1 ... v_word_dim') initialising the word embeddings"
    )
    min_count: int = Field(1, ge=1, description="words seen fewer times in the training captions map to <unk>")
    max_length: int | None = Field(None, description="truncate captions to this many tokens (None: no limit)")
    dropout: float = Field(
        0.0, ge=0, lt=1,
        description="training-time dropout on the word embeddings (before the GRU; they are also the encoder's "
        "inputs) and on the GRU outputs, local and pooled (DivE: 0.1)",
    )
    augment: CaptionAugmentConfig = Field(default_factory=CaptionAugmentConfig,
                                          description="caption augmentation at training time")


class BiGRUTextEncoder(TextEncoder):
    """Embeds words (``embed``) and runs a GRU (``rnn``) over them; padding never leaks into outputs."""

    def __init__(self, cfg: BiGRUConfig, tokenizer: WordTokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.embed = nn.Embedding(len(tokenizer), cfg.word_dim, padding_idx=tokenizer.pad_id)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embed.weight[tokenizer.pad_id].zero_()
        self.rnn = nn.GRU(cfg.word_dim, cfg.hidden_dim, cfg.num_layers, batch_first=True,
                          bidirectional=cfg.bidirectional)
        directions = 2 if cfg.bidirectional and cfg.combine == "concat" else 1
        self.pooled_dim = self.local_dim = cfg.hidden_dim * directions
        self.input_dim = cfg.word_dim
        self.dropout = nn.Dropout(cfg.dropout)
        self.glove_found: int | None = None

    def load_glove(self, path: str | Path) -> int:
        """Copy the vectors of vocabulary words found in a GloVe file into ``embed``; returns how many."""
        rows, found = read_glove(path, self.tokenizer.words, self.cfg.word_dim)
        with torch.no_grad():
            self.embed.weight[found] = rows[found].to(self.embed.weight.dtype)
        self.glove_found = int(found.sum())
        if self.glove_found == 0:
            warnings.warn(f"GloVe file {path}: none of the {len(self.tokenizer)} vocabulary words was found", stacklevel=2)
        log.info("GloVe %s: initialised %d of %d vocabulary words", path, self.glove_found, len(self.tokenizer))
        return self.glove_found

    def forward(self, batch: TextBatch) -> EncoderOutput:
        ids, mask = batch.ids, batch.mask
        words = self.dropout(self.embed(ids))
        lengths = mask.sum(1).clamp(min=1)
        packed = pack_padded_sequence(words, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        local, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        b, directions, hid = ids.shape[0], 2 if self.cfg.bidirectional else 1, self.cfg.hidden_dim
        if self.cfg.global_feature == "final_states":
            final = h.view(self.cfg.num_layers, directions, b, hid)[-1]  # (directions, B, H), last layer
            pooled = final.mean(0) if self.cfg.combine == "mean" else final.transpose(0, 1).reshape(b, -1)
        if directions == 2 and self.cfg.combine == "mean":
            local = (local[..., :hid] + local[..., hid:]) / 2
        if self.cfg.global_feature == "last_token":
            pooled = local[torch.arange(b, device=ids.device), lengths - 1]
        return EncoderOutput(pooled=self.dropout(pooled), local=self.dropout(local), mask=mask, inputs=words)


def read_glove(path: str | Path, words: Sequence[str], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (V, dim) of ``words`` from a GloVe text file and a (V,) bool mask of those found.

    An exact match wins over a case-insensitive one (GloVe 840B is cased, our vocabulary is not).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file {path} not found (expected lines 'word v1 ... v{dim}')")
    index = {w: i for i, w in enumerate(words)}
    rows = torch.zeros(len(words), dim)
    found = torch.zeros(len(words), dtype=torch.bool)
    exact = torch.zeros(len(words), dtype=torch.bool)
    with path.open(encoding="utf8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) <= dim:
                if lineno == 1 and len(parts) == 2:  # word2vec-style header "count dim"
                    continue
                raise ValueError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
            word = " ".join(parts[:-dim])  # a few GloVe 840B tokens contain spaces
            i, is_exact = index.get(word), True
            if i is None:
                i, is_exact = index.get(word.lower()), False
            if i is None or exact[i] or (found[i] and not is_exact):
                continue
            try:
                rows[i] = torch.tensor([float(x) for x in parts[-dim:]])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: non-numeric vector entry ({exc})") from None
            found[i] = True
            exact[i] = is_exact
    return rows, found


def build_bigru(
    cfg: BiGRUConfig, *, train_captions: Sequence[str] | None = None, tokenizer: Any = None, **_: Any
) -> BiGRUTextEncoder:
    """Word embeddings + biGRU; the vocabulary comes from ``tokenizer`` or is built from ``train_captions``.

    GloVe initialisation happens only when the vocabulary is built here (a given tokenizer means a
    saved model is being loaded, whose weights come from its checkpoint).
    """
    if tokenizer is None:
        if train_captions is None:
            raise ValueError("the bigru text encoder needs train_captions to build its vocabulary "
                             "(or the tokenizer saved with a model)")
        tokenizer = WordTokenizer.build(train_captions, cfg.min_count, cfg.augment, max_length=cfg.max_length)
        encoder = BiGRUTextEncoder(cfg, tokenizer)
        if cfg.glove is not None:
            encoder.load_glove(cfg.glove)
        return encoder
    if not isinstance(tokenizer, WordTokenizer):
        raise TypeError(f"the bigru text encoder needs a WordTokenizer, got {type(tokenizer).__name__}")
    return BiGRUTextEncoder(cfg, tokenizer)
