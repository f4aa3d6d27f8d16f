"""The vse method builds from its config with VSE∞ defaults, trains a few steps, and works with real encoders."""
from __future__ import annotations

from typing import Iterator, Sequence

import pytest
import torch
from torch import nn

import xmodalzoo
from xmodalzoo.config import ComponentConfig, typed_config
from xmodalzoo.data.batch import Batch, TextBatch
from xmodalzoo.encoders.base import EncoderOutput, ImageEncoder, TextEncoder
from xmodalzoo.losses.base import LossContext
from xmodalzoo.api import build_component as build
from xmodalzoo.method import Method, build_loss
from xmodalzoo.plugins import discover
from xmodalzoo.registry import REGISTRY, Entry
from xmodalzoo_vse.heads import VSEPoolHead

FAKE_PLUGIN = "vse_test_fakes"


class FakeImageEncoder(ImageEncoder):
    """Each pixel of a (B, 3, 2, 3) image is a fragment, projected to 6 dims."""

    pooled_dim, local_dim, input_dim = 6, 6, 6

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 6)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        local = self.proj(images.flatten(2).transpose(1, 2))
        return EncoderOutput(local.mean(1), local, torch.ones(local.shape[:2], dtype=torch.bool))


class FakeTokenizer:
    def __init__(self, captions: Sequence[str]) -> None:
        words = sorted({w for c in captions for w in c.split()})
        self.vocab = {w: i + 1 for i, w in enumerate(words)}

    def __call__(self, texts: Sequence[str], train: bool = False) -> TextBatch:
        ids = [[self.vocab.get(w, 0) for w in t.split()] for t in texts]
        width = max(len(x) for x in ids)
        padded = torch.tensor([x + [0] * (width - len(x)) for x in ids])
        mask = torch.tensor([[True] * len(x) + [False] * (width - len(x)) for x in ids])
        return TextBatch(padded, mask)

    def save(self, directory: object) -> None:
        pass


class FakeTextEncoder(TextEncoder):
    """Word embeddings (5-d) as both local features and inputs."""

    pooled_dim, local_dim, input_dim = 5, 5, 5

    def __init__(self, captions: Sequence[str]) -> None:
        super().__init__()
        self.tokenizer = FakeTokenizer(captions)
        self.embed = nn.Embedding(len(self.tokenizer.vocab) + 1, 5)

    def forward(self, texts: TextBatch) -> EncoderOutput:
        x = self.embed(texts.ids)
        return EncoderOutput(x.mean(1), x, texts.mask, x)


CAPTIONS = ["a red circle", "red round thing", "a blue square on top", "blue box", "green triangle", "a green tri"]
CAPTION_IMAGE = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.fixture
def fake_encoders() -> Iterator[None]:
    discover()
    for kind, name, factory in [
        ("image_encoder", "vse_fake_image", lambda cfg, **_: FakeImageEncoder()),
        ("text_encoder", "vse_fake_text", lambda cfg, *, train_captions=None, **_: FakeTextEncoder(train_captions)),
    ]:
        REGISTRY.add(Entry(kind, name, factory, typed_config(name, kind, ComponentConfig), FAKE_PLUGIN, "tests"))
    yield
    REGISTRY.remove_plugin(FAKE_PLUGIN)


def make_batch(method: Method, gen: torch.Generator) -> Batch:
    return Batch(
        images=torch.randn(3, 3, 2, 3, generator=gen),
        texts=method.tokenize(CAPTIONS),
        image_index=torch.arange(3),
        caption_index=torch.arange(6),
        caption_image=CAPTION_IMAGE,
    )


def test_vse_builds_with_vse_infinity_defaults_and_trains(fake_encoders: None) -> None:
    torch.manual_seed(0)
    cfg = {"type": "vse", "embed_dim": 8, "image_encoder": {"type": "vse_fake_image"}, "text_encoder": {"type": "vse_fake_text"}}
    method = build("method", cfg, train_captions=CAPTIONS)
    assert isinstance(method, Method)
    for h in (method.image_head, method.text_head):
        assert isinstance(h, VSEPoolHead) and h.cfg.pooling == "gpo" and h.gpo is not None
    loss_fn = build_loss(method.config)
    assert (loss_fn.cfg.margin, loss_fn.cfg.hardest, loss_fn.cfg.warmup_epochs, loss_fn.cfg.reduction) == (0.2, True, 1, "sum")

    batch = make_batch(method, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        img, txt, extras = method(batch)
        assert img.vectors.shape == (3, 8) and txt.vectors.shape == (6, 8)
        out = loss_fn(img, txt, LossContext(batch.positives(), method.similarity, epoch=step // 10, extras=extras))
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            for head in (method.image_head, method.text_head):
                assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.gpo.parameters())
        opt.step()
        losses.append(out.loss.item())
    # same regime (hardest negatives, epochs 1-2) early vs late: training must have reduced it
    assert losses[-1] < 0.7 * losses[10], losses

    with torch.no_grad():
        scores = method.score(method.encode_image(batch.images), method.encode_text(CAPTIONS))
    assert torch.equal(scores.argmax(0), CAPTION_IMAGE)


def test_unknown_vse_option_names_the_field(fake_encoders: None) -> None:
    with pytest.raises(Exception, match="embed_dimm"):
        build("method", {"type": "vse", "embed_dimm": 8})


def test_vse_with_real_core_encoders() -> None:
    images = xmodalzoo.list_components("image_encoder")
    texts = xmodalzoo.list_components("text_encoder")
    if "timm" not in images or "bigru" not in texts:
        pytest.skip(f"core encoders timm/bigru are not registered yet (image: {images}, text: {texts})")
    import timm

    model = "test_resnet" if "test_resnet" in timm.list_models() else "resnet10t"
    torch.manual_seed(0)
    cfg = {
        "type": "vse",
        "embed_dim": 16,
        "image_encoder": {"type": "timm", "model": model, "pretrained": False, "image_size": 32},
        "text_encoder": {"type": "bigru", "word_dim": 8, "hidden_dim": 16, "combine": "mean", "min_count": 1},
    }
    method = build("method", cfg, train_captions=CAPTIONS)
    batch = Batch(torch.randn(3, 3, 32, 32), method.tokenize(CAPTIONS, train=True), torch.arange(3), torch.arange(6), CAPTION_IMAGE)
    img, txt, _ = method(batch)
    assert img.vectors.shape == (3, 16) and txt.vectors.shape == (6, 16)
    assert torch.allclose(img.vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    out = build_loss(method.config)(img, txt, LossContext(batch.positives(), method.similarity))
    out.loss.backward()
    assert method.image_head.gpo.score.weight.grad is not None
