"""The core triplet loss as VSE defines it: a per-positive-pair loop reference, both regimes, values and grads."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.losses.base import LossContext
from xmodalzoo.api import build_component as build


def reference(scores: torch.Tensor, positives: torch.Tensor, margin: float, hardest: bool, reduction: str) -> torch.Tensor:
    """Explicit loops: for each positive (i, t), hinge on captions not matching i and images not matching t."""
    i2t, t2i = [], []
    n_img, n_txt = positives.shape
    for i in range(n_img):
        for t in range(n_txt):
            if not positives[i, t]:
                continue
            pos = scores[i, t]
            neg_txt = [torch.clamp(margin + scores[i, u] - pos, min=0) for u in range(n_txt) if not positives[i, u]]
            neg_img = [torch.clamp(margin + scores[j, t] - pos, min=0) for j in range(n_img) if not positives[j, t]]
            zero = scores.new_zeros(())
            if hardest:
                i2t.append(torch.stack(neg_txt).max() if neg_txt else zero)
                t2i.append(torch.stack(neg_img).max() if neg_img else zero)
            else:
                i2t.append(torch.stack(neg_txt).sum() if neg_txt else zero)
                t2i.append(torch.stack(neg_img).sum() if neg_img else zero)
    reduce = torch.sum if reduction == "sum" else torch.mean
    return reduce(torch.stack(i2t)) + reduce(torch.stack(t2i))


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4 image rows (rows 0 and 3 are the same dataset image) and 7 captions, several per image."""
    gen = torch.Generator().manual_seed(seed)
    image_index = torch.tensor([10, 11, 12, 10])
    caption_image = torch.tensor([0, 0, 1, 1, 1, 2, 3])
    positives = image_index[:, None] == image_index[caption_image][None, :]
    img = torch.randn(4, 8, generator=gen, requires_grad=True)
    txt = torch.randn(7, 8, generator=gen, requires_grad=True)
    return img, txt, positives


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("epoch,expect_hardest", [(0, False), (1, True), (3, True)])
def test_vse_triplet_matches_loop_reference(epoch: int, expect_hardest: bool, reduction: str) -> None:
    loss_fn = build("loss", {"type": "triplet", "margin": 0.2, "warmup_epochs": 1, "reduction": reduction})
    similarity = build("similarity", {"type": "cosine"})
    img, txt, positives = batch(seed=epoch)
    out = loss_fn(PointEmbedding(img), PointEmbedding(txt), LossContext(positives, similarity, epoch=epoch))
    got_grads = torch.autograd.grad(out.loss, [img, txt])

    scores = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    want = reference(scores, positives, 0.2, expect_hardest, reduction)
    want_grads = torch.autograd.grad(want, [img, txt])

    assert out.loss.item() > 0
    assert torch.allclose(out.loss, want, atol=1e-5)
    assert torch.allclose(out.terms["i2t"] + out.terms["t2i"], want, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-5)


def test_warmup_and_hardest_regimes_differ() -> None:
    loss_fn = build("loss", {"type": "triplet", "margin": 0.2, "warmup_epochs": 1, "reduction": "sum"})
    similarity = build("similarity", {"type": "cosine"})
    img, txt, positives = batch(seed=5)
    warm = loss_fn(PointEmbedding(img), PointEmbedding(txt), LossContext(positives, similarity, epoch=0)).loss
    hard = loss_fn(PointEmbedding(img), PointEmbedding(txt), LossContext(positives, similarity, epoch=1)).loss
    assert warm > hard > 0


def test_vse_default_loss_is_the_official_vse_infinity_objective() -> None:
    """The vse method's default loss against VSE∞'s official ContrastiveLoss on a B × B batch (one
    caption per image): the warm-up epoch sums every hinge term of both (diagonal-zeroed) cost
    matrices; afterwards the hardest term of each row (i2t) and column (t2i), summed over the batch."""
    from xmodalzoo.registry import REGISTRY

    cfg = REGISTRY.get("method", "vse").validate({}).loss
    loss_fn = build("loss", cfg if isinstance(cfg, dict) else cfg.model_dump())
    gen = torch.Generator().manual_seed(0)
    b, margin = 6, 0.2
    scores = torch.randn(b, b, generator=gen, dtype=torch.float64) * 0.5
    eye = torch.eye(b, dtype=torch.bool)
    diag = scores.diag()
    cost_s = (margin + scores - diag[:, None]).clamp(min=0).masked_fill(eye, 0)   # caption retrieval
    cost_im = (margin + scores - diag[None, :]).clamp(min=0).masked_fill(eye, 0)  # image retrieval
    warm = cost_s.sum() + cost_im.sum()
    hard = cost_s.max(1).values.sum() + cost_im.max(0).values.sum()
    assert torch.allclose(loss_fn.from_scores(scores, eye, epoch=0).loss, warm, atol=1e-12)
    assert torch.allclose(loss_fn.from_scores(scores, eye, epoch=1).loss, hard, atol=1e-12)
    assert warm > hard > 0
