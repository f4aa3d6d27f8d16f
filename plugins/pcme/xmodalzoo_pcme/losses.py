"""PCME's soft contrastive loss (Monte-Carlo) and PCME++'s closed-form BCE loss, with their regularisers.

Both read the learnable a, b from ``ctx.similarity`` (they belong to the model): ``pcme`` needs the
``match_prob`` similarity, ``pcmepp`` the ``csd`` similarity.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from xmodalzoo.plugin_api import ComponentConfig, Embedding, GaussianEmbedding, Loss, LossContext, LossOutput

from .gaussian import check_gaussian, kl_to_standard_normal
from .similarity import ClosedFormSampledDistance, MatchProb


def soft_contrastive_nll(
    pair_logits: torch.Tensor, positives: torch.Tensor, reduction: Literal["sum", "mean", "none"] = "mean"
) -> torch.Tensor:
    """−log p (matches) or −log(1 − p) (non-matches) for every (B_i, B_t) pair, summed, averaged or not.

    ``pair_logits`` (B_i, B_t, J, J') holds s = −a·d + b per sample pair (:meth:`MatchProb.pair_logits`);
    p = mean over the J·J' sample pairs of sigmoid(2s) (the official e^s / (e^s + e^−s)), so
    log p = logsumexp(logsigmoid(2s)) − log(J·J') and log(1 − p) = logsumexp(logsigmoid(−2s)) − log(J·J').
    ``reduction="none"`` returns the (B_i, B_t) per-pair values.  i2t and t2i are the same pairs:
    counted once here.
    """
    if pair_logits.dim() != 4 or pair_logits.shape[:2] != positives.shape:
        raise ValueError(
            f"pair logits must be (B_i, B_t, J, J') matching positives {tuple(positives.shape)}, "
            f"got {tuple(pair_logits.shape)}"
        )
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'sum', 'mean' or 'none'")
    log_count = math.log(pair_logits.shape[2] * pair_logits.shape[3])
    doubled = 2.0 * pair_logits.flatten(2)
    log_p = torch.logsumexp(F.logsigmoid(doubled), dim=-1) - log_count
    log_not_p = torch.logsumexp(F.logsigmoid(-doubled), dim=-1) - log_count
    nll = -torch.where(positives.bool(), log_p, log_not_p)
    if reduction == "none":
        return nll
    return nll.sum() if reduction == "sum" else nll.mean()


def uniformity(samples: torch.Tensor) -> torch.Tensor:
    """log mean over distinct pairs of exp(−2‖x − y‖²) for (S, D) points (lower = more uniform)."""
    if samples.dim() != 2 or samples.shape[0] < 2:
        raise ValueError(f"uniformity needs (S >= 2, D) points, got {tuple(samples.shape)}")
    sq = torch.pdist(samples, p=2).pow(2)
    return torch.logsumexp(-2.0 * sq, dim=0) - math.log(sq.numel())


class PCMELossConfig(ComponentConfig):
    """Options of the PCME loss (defaults: the official objective)."""

    vib_weight: float = Field(1e-5, ge=0, description="β of the VIB term, KL to N(0, I) (COCO 1e-5, CUB 1e-3)")
    uniformity_weight: float = Field(0.0, ge=0, description="λ of the uniformity loss over all samples (COCO 0, CUB 10)")
    reduction: Literal["sum", "mean"] = Field(
        "sum",
        description="sum: the official objective, so published β and λ keep their meaning — the NLL summed "
        "over all B_i × B_t pairs for each direction (i2t + t2i, i.e. twice the sum) and the KL summed over "
        "items and dimensions; mean: the NLL averaged over the pairs and the KL averaged over items "
        "(summed over dimensions)",
    )
    vib_on: Literal["samples", "mean"] = Field(
        "samples",
        description="the Gaussian mean m of the KL: samples = the mean of the J drawn samples of each item "
        "(official code); mean = μ itself",
    )
    vib_kl: Literal["official", "gaussian"] = Field(
        "official",
        description="official: the official code's ½Σ(σ + m² − 1 − log σ) (its log σ output sits in the "
        "log-variance slot of the KL formula); gaussian: the true KL of N(m, σ²), ½Σ(σ² + m² − 1 − log σ²)",
    )


class PCMELoss(Loss):
    """Soft contrastive NLL over all B_i × B_t pairs + β·VIB + λ·uniformity.

    ``reduction: sum`` (default) is the official objective: 2·Σ_pairs NLL (i2t and t2i are the same
    pairs, computed once and counted twice) + β·Σ_items KL + λ·uniformity.  ``reduction: mean`` is
    mean_pairs NLL + β·mean_items KL + λ·uniformity.  The KL is always summed over dimensions; its
    mean is the mean of the drawn samples (``vib_on: samples``, official) or μ (``vib_on: mean``).
    """

    def __init__(self, cfg: PCMELossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:
        sim = ctx.similarity
        if not isinstance(sim, MatchProb):
            raise TypeError(f"the pcme loss needs the match_prob similarity, the model has {type(sim).__name__}")
        image = check_gaussian(image, "the pcme loss")
        text = check_gaussian(text, "the pcme loss")
        return self.from_samples(image, text, sim.sample(image), sim.sample(text), ctx.positives, sim)

    def vib(self, emb: GaussianEmbedding, samples: torch.Tensor) -> torch.Tensor:
        """The KL term of one modality given its (B, J, D) samples, with this loss's options."""
        mean = samples.mean(1) if self.cfg.vib_on == "samples" else None
        reduction = "sum" if self.cfg.reduction == "sum" else "sum_dims"
        return kl_to_standard_normal(emb, reduction, form=self.cfg.vib_kl, mean=mean)

    def from_samples(
        self,
        image: GaussianEmbedding,
        text: GaussianEmbedding,
        image_samples: torch.Tensor,
        text_samples: torch.Tensor,
        positives: torch.Tensor,
        sim: MatchProb,
    ) -> LossOutput:
        """The loss given the (B, J, D) samples drawn from ``image`` and ``text``."""
        summed = self.cfg.reduction == "sum"
        nll = soft_contrastive_nll(sim.pair_logits(image_samples, text_samples), positives, self.cfg.reduction)
        if summed:
            nll = 2.0 * nll  # i2t + t2i
        loss = nll
        terms = {"nll": nll.detach()}
        if self.cfg.vib_weight > 0:
            kl = self.vib(image, image_samples) + self.vib(text, text_samples)
            loss = loss + self.cfg.vib_weight * kl
            terms["kl"] = kl.detach()
        if self.cfg.uniformity_weight > 0:
            unif = uniformity(torch.cat([image_samples.flatten(0, 1), text_samples.flatten(0, 1)]))
            loss = loss + self.cfg.uniformity_weight * unif
            terms["uniformity"] = unif.detach()
        terms["scale"] = sim.scale.detach()
        terms["shift"] = sim.shift.detach()
        return LossOutput(loss, terms)


def build_pcme_loss(cfg: PCMELossConfig, **_: object) -> PCMELoss:
    """PCME soft contrastive loss (Monte-Carlo, all pairs) with VIB and uniformity regularisers."""
    return PCMELoss(cfg)


# ---------------------------------------------------------------------------------------------- PCME++


def pseudo_positive_mask(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """(A, C) bool: non-positive candidates whose logit ≥ the lowest logit of the anchor's true pairs.

    Rows are anchors; an anchor with no true pair gets no pseudo-positives.
    """
    pos = positives.bool()
    inf = torch.tensor(float("inf"), dtype=logits.dtype, device=logits.device)
    threshold = torch.where(pos, logits.detach(), inf).min(dim=1, keepdim=True).values
    return (logits.detach() >= threshold) & ~pos


def weighted_bce(logits: torch.Tensor, positives: torch.Tensor, pseudo_weight: float) -> torch.Tensor:
    """Mean over all (A, C) pairs of BCE-with-logits; pseudo-positives (per row) get target 1 and weight ω."""
    pos = positives.bool()
    pseudo = pseudo_positive_mask(logits, pos) if pseudo_weight > 0 else torch.zeros_like(pos)
    target = (pos | pseudo).to(logits.dtype)
    weight = torch.where(pseudo, torch.full_like(logits, pseudo_weight), torch.ones_like(logits))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="mean")


class PCMEppLossConfig(ComponentConfig):
    """Options of the PCME++ loss."""

    pseudo_positive_weight: float = Field(
        0.1, ge=0, description="ω of candidates scoring at least as high as the true pair (0 disables)"
    )
    vib_weight: float = Field(1e-4, ge=0, description="weight of KL(N(μ, σ²) ‖ N(0, I)), mean over items and dims")
    kl_reduction: Literal["mean", "sum_dims"] = Field("mean", description="KL reduction (PCME++ uses mean)")


class PCMEppLoss(Loss):
    """BCE with logits −a·CSD + b over all pairs, both directions, with pseudo-positives, + KL."""

    def __init__(self, cfg: PCMEppLossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, image: Embedding, text: Embedding, ctx: LossContext) -> LossOutput:
        sim = ctx.similarity
        if not isinstance(sim, ClosedFormSampledDistance):
            raise TypeError(f"the pcmepp loss needs the csd similarity, the model has {type(sim).__name__}")
        image = check_gaussian(image, "the pcmepp loss")
        text = check_gaussian(text, "the pcmepp loss")
        logits = sim(image, text)  # (B_i, B_t)
        pos = ctx.positives.bool()
        w = self.cfg.pseudo_positive_weight
        i2t = weighted_bce(logits, pos, w)
        t2i = weighted_bce(logits.t(), pos.t(), w)
        loss = i2t + t2i
        terms = {"i2t": i2t.detach(), "t2i": t2i.detach()}
        if self.cfg.vib_weight > 0:
            kl = kl_to_standard_normal(image, self.cfg.kl_reduction) + kl_to_standard_normal(text, self.cfg.kl_reduction)
            loss = loss + self.cfg.vib_weight * kl
            terms["kl"] = kl.detach()
        terms["scale"] = sim.scale.detach()
        terms["shift"] = sim.shift.detach()
        return LossOutput(loss, terms)


def build_pcmepp_loss(cfg: PCMEppLossConfig, **_: object) -> PCMEppLoss:
    """PCME++ BCE on closed-form sampled distance logits, with pseudo-positives and KL."""
    return PCMEppLoss(cfg)
