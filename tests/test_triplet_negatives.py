"""The core triplet loss's ``negatives: mean`` option against an explicit loop over (anchor, column) terms."""
from __future__ import annotations

import torch

from xmodalzoo.losses.triplet import TripletConfig, TripletLoss


def reference_mean(scores: torch.Tensor, positives: torch.Tensor, margin: float) -> torch.Tensor:
    """For every positive pair (i, t): the mean over ALL columns of its row of the hinge terms, where a
    column that also matches the anchor contributes 0 (the official PVSE mean over the B x B matrix)."""
    n_img, n_txt = positives.shape
    i2t, t2i = [], []
    for i in range(n_img):
        for t in range(n_txt):
            if not positives[i, t]:
                continue
            pos = float(scores[i, t])
            row = [0.0 if positives[i, u] else max(0.0, margin + float(scores[i, u]) - pos) for u in range(n_txt)]
            col = [0.0 if positives[j, t] else max(0.0, margin + float(scores[j, t]) - pos) for j in range(n_img)]
            i2t.append(sum(row) / n_txt)
            t2i.append(sum(col) / n_img)
    return torch.tensor(sum(i2t) / len(i2t) + sum(t2i) / len(t2i), dtype=torch.float64)


def test_mean_over_negatives_matches_the_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 9, generator=gen, dtype=torch.float64) * 0.3
    caption_image = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])
    positives = torch.arange(5)[:, None] == caption_image[None, :]
    loss = TripletLoss(TripletConfig(margin=0.2, hardest=False, negatives="mean", reduction="mean"))
    out = loss.from_scores(scores, positives)
    assert torch.allclose(out.loss, reference_mean(scores, positives, 0.2), atol=1e-12)


def test_official_pvse_square_batch_is_the_mean_over_b_squared() -> None:
    """One caption per image (B x B, positives on the diagonal): the loss is each direction's hinge
    matrix averaged over all B^2 entries, the diagonal counted as zeros."""
    gen = torch.Generator().manual_seed(1)
    b, margin = 6, 0.1
    scores = torch.randn(b, b, generator=gen, dtype=torch.float64)
    diag = scores.diag()
    eye = torch.eye(b, dtype=torch.bool)
    cost_s = (margin + scores - diag[:, None]).clamp(min=0).masked_fill(eye, 0)   # anchor image, row i
    cost_im = (margin + scores - diag[None, :]).clamp(min=0).masked_fill(eye, 0)  # anchor caption, column t
    expected = cost_s.sum() / b**2 + cost_im.sum() / b**2
    loss = TripletLoss(TripletConfig(margin=margin, hardest=False, negatives="mean"))
    assert torch.allclose(loss.from_scores(scores, eye).loss, expected, atol=1e-12)
