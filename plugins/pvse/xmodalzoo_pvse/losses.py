"""PVSE's loss: hinge triplet on the MIL similarity, plus diversity and MMD regularisers (K > 1)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from xmodalzoo.plugin_api import (
    Embedding, Loss, LossContext, LossOutput, PointEmbedding, SetEmbedding, TripletConfig, TripletLoss,
    laplacian_kernel, mmd,  # noqa: F401  (laplacian_kernel: re-exported for the tests)
)


class PVSELossConfig(TripletConfig):
    """Options of the PVSE loss: the core triplet loss's options with PVSE's defaults, plus the regularisers."""

    margin: float = Field(0.1, ge=0, description="hinge margin of the triplet loss")
    negatives: Literal["sum", "mean", "mean_all"] = Field(
        "mean_all",
        description="all-negatives reduction (hardest false, or during a warm-up): mean_all is the official PVSE "
        "loss (the B × B hinge matrix averaged, its zeroed diagonal included); sum is B times larger",
    )
    diversity_weight: float = Field(0.1, ge=0, description="weight of ‖R Rᵀ − I‖_F / K² on the residuals")
    mmd_weight: float = Field(0.01, ge=0, description="weight of the image/text MMD")
    mmd_gamma: float = Field(0.5, gt=0, description="γ of the kernel exp(−γ‖x − y‖₂) (distance not squared)")


def diversity(residuals: torch.Tensor) -> torch.Tensor:
    """Mean over items of ‖R Rᵀ − I‖_F / K² for residual sets R (N, K, D), rows L2-normalised."""
    k = residuals.shape[1]
    gram = residuals @ residuals.transpose(1, 2)
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    return torch.linalg.matrix_norm(gram - eye, ord="fro").mean() / k**2


def _vectors(emb: Embedding, role: str) -> torch.Tensor:
    """Embedding vectors as a set (N, K, D); a point embedding is a set of one."""
    if isinstance(emb, SetEmbedding):
        return emb.vectors
    if isinstance(emb, PointEmbedding):
        return emb.vectors[:, None, :]
    raise TypeError(f"pvse loss needs set or point embeddings; the {role} embedding is {type(emb).__name__}")


def _residuals(emb: Embedding, role: str) -> torch.Tensor:
    res = emb.aux.get("residuals")  # type: ignore[attr-defined]
    if res is None:
        raise ValueError(
            f"pvse loss: the {role} embedding has no aux['residuals'] (N, K, D) for the diversity "
            "regulariser; use the pvse_pie head or set diversity_weight: 0"
        )
    return res


class PVSELoss(Loss):
    """Triplet(MIL scores) + w_div · (div(image) + div(text)) + w_mmd · MMD(images, texts).

    The regularisers apply only when K > 1.  ``terms``: ``i2t``, ``t2i`` and, when K > 1,
    ``diversity`` and ``mmd`` (unweighted).
    """

    def __init__(self, cfg: PVSELossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.triplet = TripletLoss(TripletConfig(**cfg.model_dump(include=set(TripletConfig.model_fields))))

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:
        img, txt = _vectors(image, "image"), _vectors(text, "text")
        out = self.triplet.from_scores(ctx.similarity(image, text), ctx.positives, ctx.epoch)
        loss, terms = out.loss, dict(out.terms)
        if max(img.shape[1], txt.shape[1]) > 1:
            if self.cfg.diversity_weight > 0:
                div = diversity(_residuals(image, "image")) + diversity(_residuals(text, "text"))
                loss = loss + self.cfg.diversity_weight * div
                terms["diversity"] = div.detach()
            if self.cfg.mmd_weight > 0:
                dist = mmd(img.flatten(0, 1), txt.flatten(0, 1), self.cfg.mmd_gamma)
                loss = loss + self.cfg.mmd_weight * dist
                terms["mmd"] = dist.detach()
        return LossOutput(loss, terms)


def build_pvse_loss(cfg: PVSELossConfig, **_: object) -> PVSELoss:
    """PVSE: hardest-negative triplet on MIL scores, diversity and MMD regularisers when K > 1."""
    return PVSELoss(cfg)
