"""Word vocabulary, caption augmentation, saving and reloading tokenizers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xmodalzoo.encoders.augment import CaptionAugmentConfig, augment_ids, compact
from xmodalzoo.encoders.tokenizers import MARKER, load_tokenizer
from xmodalzoo.encoders.vocab import SPECIALS, WordTokenizer, split_words

CAPTIONS = [
    "A dog runs on the grass.",
    "Two dogs play with a red ball",
    "A man rides a bike down the street",
    "the dog is brown",
]


def test_split_words_lowercases_and_separates_punctuation() -> None:
    assert split_words("A Dog's toy, red!") == ["a", "dog's", "toy", ",", "red", "!"]


def test_vocab_special_tokens_and_order() -> None:
    tok = WordTokenizer.build(CAPTIONS)
    assert tok.words[: len(SPECIALS)] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert tok.pad_id == 0
    # most frequent word first: "a" occurs 4 times, more than any other word
    assert tok.words[len(SPECIALS)] == "a"
    ids = tok.encode("a zebra")
    assert ids == [tok.word_to_id["<start>"], tok.word_to_id["a"], tok.unk_id, tok.word_to_id["<end>"]]


def test_min_count_maps_rare_words_to_unk() -> None:
    tok = WordTokenizer.build(CAPTIONS, min_count=2)
    assert "bike" not in tok.word_to_id and "dog" in tok.word_to_id
    assert tok.encode("bike")[1] == tok.unk_id
    with pytest.raises(ValueError, match="min_count"):
        WordTokenizer.build(["one two"], min_count=5)


def test_batch_padding_and_mask() -> None:
    tok = WordTokenizer.build(CAPTIONS)
    batch = tok(["a dog", "a man rides a bike"])
    assert batch.ids.shape == (2, 7)
    assert batch.mask.tolist() == [[True] * 4 + [False] * 3, [True] * 7]
    assert (batch.ids[~batch.mask] == 0).all()
    assert tok.decode(batch.ids[0]) == ["<start>", "a", "dog", "<end>"]


def test_max_length_truncates_words_but_keeps_end_token() -> None:
    tok = WordTokenizer.build(CAPTIONS, max_length=4)
    ids = tok.encode("a man rides a bike")
    assert len(ids) == 4 and tok.words[ids[-1]] == "<end>"


def test_save_load_round_trip_gives_identical_ids(tmp_path: Path) -> None:
    aug = CaptionAugmentConfig(style="pcme", mask_prob=0.3)
    tok = WordTokenizer.build(CAPTIONS, augment=aug)
    tok.save(tmp_path)
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / MARKER).is_file()
    again = WordTokenizer.load(tmp_path)
    texts = ["a dog plays with a zebra", "the man"]
    assert torch.equal(again(texts).ids, tok(texts).ids)
    assert again.words == tok.words and again.augment == aug
    assert isinstance(load_tokenizer(tmp_path), WordTokenizer)


def test_from_word2idx_keeps_given_ids() -> None:
    mapping = {w: i for i, w in enumerate([*SPECIALS, "dog", "cat"])}
    tok = WordTokenizer.from_word2idx(mapping)
    assert tok.encode("cat dog")[1:3] == [5, 4]
    with pytest.raises(ValueError, match="0..N-1"):
        WordTokenizer.from_word2idx({"<pad>": 0, "x": 2})


def test_augmentation_only_when_training() -> None:
    tok = WordTokenizer.build(CAPTIONS, augment=CaptionAugmentConfig(style="vse", perturb_prob=0.9))
    texts = CAPTIONS * 5
    plain = tok(texts)
    assert torch.equal(tok(texts, train=False).ids, plain.ids)
    torch.manual_seed(0)
    augmented = tok(texts, train=True)
    assert augmented.ids.shape != plain.ids.shape or not torch.equal(augmented.ids, plain.ids)
    # start/end tokens survive, padding stays 0
    lengths = augmented.mask.sum(1)
    rows = torch.arange(len(texts))
    assert (augmented.ids[:, 0] == tok.word_to_id["<start>"]).all()
    assert (augmented.ids[rows, lengths - 1] == tok.word_to_id["<end>"]).all()
    assert (augmented.ids[~augmented.mask] == 0).all()


def test_augmentation_is_seeded_by_torch() -> None:
    tok = WordTokenizer.build(CAPTIONS, augment=CaptionAugmentConfig(style="pcme", mask_prob=0.5))
    torch.manual_seed(3)
    a = tok(CAPTIONS, train=True)
    torch.manual_seed(3)
    b = tok(CAPTIONS, train=True)
    assert torch.equal(a.ids, b.ids)


def _long_captions(n: int, words: int = 20) -> tuple[WordTokenizer, list[str]]:
    vocab = [f"w{i}" for i in range(50)]
    g = torch.Generator().manual_seed(0)
    caps = [" ".join(vocab[j] for j in torch.randint(50, (words,), generator=g).tolist()) for _ in range(n)]
    return WordTokenizer.build(caps), caps


def test_pcme_augmentation_ratios() -> None:
    tok, caps = _long_captions(400)
    tok.augment = CaptionAugmentConfig(style="pcme", mask_prob=0.1, delete_ratio=0.1)
    torch.manual_seed(0)
    batch = tok(caps, train=True)
    # exactly floor(0.1 * 20) = 2 words deleted from every caption (+2 for <start>/<end>)
    assert (batch.mask.sum(1) == 20 - 2 + 2).all()
    unk_share = (batch.ids == tok.unk_id).float().sum() / (400 * 18)
    assert 0.07 < unk_share < 0.13


def test_vse_augmentation_ratios() -> None:
    tok, caps = _long_captions(400)
    tok.augment = CaptionAugmentConfig(style="vse", perturb_prob=0.2, mask_share=0.5, random_share=0.1)
    torch.manual_seed(0)
    batch = tok(caps, train=True)
    words = 400 * 20
    deleted = (words + 2 * 400 - int(batch.mask.sum())) / words  # expected 0.2 * 0.4 = 0.08
    masked = float((batch.ids == tok.unk_id).sum()) / words  # expected 0.2 * 0.5 = 0.10
    assert 0.06 < deleted < 0.10
    assert 0.08 < masked < 0.12


def test_compact_matches_loop_reference() -> None:
    torch.manual_seed(1)
    ids = torch.randint(1, 9, (6, 7))
    mask = torch.arange(7)[None] < torch.tensor([7, 5, 3, 1, 6, 4])[:, None]
    keep = mask & (torch.rand(6, 7) > 0.4)
    out_ids, out_mask = compact(ids, keep)
    for row in range(6):
        expected = [int(ids[row, j]) for j in range(7) if keep[row, j]]
        assert out_ids[row][out_mask[row]].tolist() == expected
        assert (out_ids[row][~out_mask[row]] == 0).all()
    assert out_ids.shape[1] == max(int(keep.sum(1).max()), 1)


def test_augment_never_touches_non_editable_tokens() -> None:
    ids = torch.arange(1, 11).repeat(30, 1)
    mask = torch.ones_like(ids, dtype=torch.bool)
    editable = torch.zeros_like(mask)
    editable[:, 3:6] = True
    torch.manual_seed(0)
    out, out_mask = augment_ids(ids, mask, editable, CaptionAugmentConfig(style="vse", perturb_prob=1.0),
                                mask_id=99, random_ids=torch.tensor([50, 51]))
    for row in range(30):
        kept = out[row][out_mask[row]].tolist()
        assert kept[:3] == [1, 2, 3] and kept[-4:] == [7, 8, 9, 10]
        assert set(kept[3:-4]) <= {99, 50, 51}


def test_augment_config_rejects_shares_over_one() -> None:
    with pytest.raises(ValueError, match="mask_share"):
        CaptionAugmentConfig(style="vse", mask_share=0.8, random_share=0.3)


def test_load_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=MARKER):
        load_tokenizer(tmp_path)
    (tmp_path / MARKER).write_text(json.dumps({"type": "sentencepiece"}))
    with pytest.raises(ValueError, match="unknown tokenizer type 'sentencepiece'"):
        load_tokenizer(tmp_path)
