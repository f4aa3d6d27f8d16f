"""The dive_slots head: elements from slots and the global feature, options by modality, padding."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.encoders.base import EncoderOutput
from xmodalzoo.api import build_component as build
from xmodalzoo_dive.heads import DivEHead, masked_max

CAPTIONS = ["a red circle", "two shapes: a blue star and a small green triangle on the left", "a square"]


class FakeEncoder:
    def __init__(self, pooled: int, local: int, inputs: int) -> None:
        self.pooled_dim, self.local_dim, self.input_dim = pooled, local, inputs


def _head(modality: str, encoder: FakeEncoder, embed_dim: int = 8, **cfg: object) -> DivEHead:
    torch.manual_seed(0)
    spec = {"type": "dive_slots", "head_dim": 4, "attention_heads": 2, "dropout": 0.0, **cfg}
    return build("head", spec, encoder=encoder, embed_dim=embed_dim, modality=modality).eval()


def _feats(b: int, l: int, pooled: int, local: int, inputs: int, valid_len: list[int]) -> EncoderOutput:
    gen = torch.Generator().manual_seed(1)
    mask = torch.arange(l)[None, :] < torch.tensor(valid_len)[:, None]
    return EncoderOutput(torch.randn(b, pooled, generator=gen), torch.randn(b, l, local, generator=gen), mask,
                         torch.randn(b, l, inputs, generator=gen))


def test_modality_defaults() -> None:
    image = _head("image", FakeEncoder(8, 8, 8))
    text = _head("text", FakeEncoder(8, 6, 5))
    assert (image.source, image.global_source, image.use_position_code) == ("local", "max_local", False)
    assert (text.source, text.global_source, text.use_position_code) == ("inputs", "pooled", True)
    assert image.spm.num_slots == 4 and image.spm.iterations == 4 and len(image.spm.blocks) == 1


def test_elements_are_normalised_layernormed_global_plus_slots() -> None:
    head = _head("image", FakeEncoder(8, 8, 8), num_slots=3)
    feats = _feats(2, 5, 8, 8, 8, [5, 3])
    with torch.no_grad():
        emb = head(feats)
        slots, _ = head.spm(feats.local, feats.mask, "official")
        glob = torch.stack([feats.local[b, : n].max(0).values for b, n in enumerate([5, 3])])  # max over valid cells
    assert emb.vectors.shape == (2, 3, 8)
    torch.testing.assert_close(emb.aux["slots"], slots)
    want = F.normalize(F.layer_norm(glob, (8,), head.global_norm.weight, head.global_norm.bias)[:, None] + slots, dim=-1)
    torch.testing.assert_close(emb.vectors, want)
    assert emb.aux["attention"].shape == (2, 3, 5)
    torch.testing.assert_close(emb.aux["attention"].sum(-1), torch.ones(2, 3), atol=1e-5, rtol=0)


def test_masked_max_ignores_padding() -> None:
    x = torch.tensor([[[1.0, -5.0], [9.0, 2.0]], [[-3.0, -1.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, False], [False, False]])
    torch.testing.assert_close(masked_max(x, valid), torch.tensor([[1.0, -5.0], [0.0, 0.0]]))


def test_projection_and_global_options() -> None:
    enc = FakeEncoder(pooled=10, local=12, inputs=12)
    head = _head("image", enc, input_projection="linear_mlp")
    assert head.projection is not None and head.projection.fc.in_features == 12
    emb = head(_feats(2, 4, 10, 12, 12, [4, 4]))
    assert emb.vectors.shape == (2, 4, 8)
    pooled = _head("image", enc, global_feature="pooled", project_global=True)
    assert pooled.global_fc.in_features == 10
    with pytest.raises(ValueError, match="project_global: true"):
        _head("image", enc, global_feature="pooled")


@pytest.mark.parametrize("padding,changes", [("official", True), ("exclude", False)])
def test_text_padding_through_a_bigru(padding: str, changes: bool) -> None:
    torch.manual_seed(0)
    enc = build("text_encoder", {"type": "bigru", "word_dim": 6, "hidden_dim": 8, "combine": "mean"},
                train_captions=CAPTIONS).eval()
    head = _head("text", enc, padding=padding, positions="caption_length")
    with torch.no_grad():
        batch = enc.tokenizer(CAPTIONS)
        feats = enc(batch)
        base = head(feats).vectors
        noisy = feats.inputs.clone()
        pad = ~feats.mask
        noisy[pad] = torch.randn(int(pad.sum()), 6)  # perturb only the padded tokens
        moved = head(EncoderOutput(feats.pooled, feats.local, feats.mask, noisy)).vectors
    short = [0, 2]  # the captions that have padding
    assert (not torch.allclose(base[short], moved[short], atol=1e-6)) == changes
    torch.testing.assert_close(base[1], moved[1])  # the longest caption has no padding


def test_caption_length_positions_make_exclude_batch_independent() -> None:
    torch.manual_seed(0)
    enc = build("text_encoder", {"type": "bigru", "word_dim": 6, "hidden_dim": 8, "combine": "mean"},
                train_captions=CAPTIONS).eval()
    clean = _head("text", enc, padding="exclude", positions="caption_length")
    official = _head("text", enc)  # padding official, positions over the padded width
    with torch.no_grad():
        alone = enc(enc.tokenizer(CAPTIONS[:1]))
        together = enc(enc.tokenizer(CAPTIONS))
        torch.testing.assert_close(clean(alone).vectors[0], clean(together).vectors[0])
        assert not torch.allclose(official(alone).vectors[0], official(together).vectors[0], atol=1e-5)


def test_different_set_sizes_per_modality_score_together() -> None:
    image = _head("image", FakeEncoder(8, 8, 8), num_slots=4)
    text = _head("text", FakeEncoder(8, 8, 5), num_slots=2)
    img = image(_feats(3, 6, 8, 8, 8, [6, 6, 6]))
    txt = text(_feats(5, 7, 8, 8, 5, [7, 3, 2, 5, 1]))
    assert img.vectors.shape == (3, 4, 8) and txt.vectors.shape == (5, 2, 8)
    for name in ("smooth_chamfer", "chamfer", "smooth_chamfer_euclidean", "set_match_prob"):
        assert build("similarity", {"type": name})(img, txt).shape == (3, 5)
