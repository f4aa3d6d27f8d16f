"""Sampling and closed-form quantities of diagonal Gaussian embeddings.

Convention used everywhere in this plugin: a head outputs ``logvar`` = log σ² (the PCME++ choice),
so σ = exp(logvar / 2).  (The official PCME code samples with exp(log σ) as a std but treats the same
tensor as a log-variance in its KL; a converted PCME checkpoint needs ``logvar = 2 · logsigma``.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from xmodalzoo.plugin_api import Embedding, GaussianEmbedding


@dataclass
class GaussianSamples(Embedding):
    """J fixed samples per item, as a sampling similarity reads them at inference.

    ``samples`` (N, J, D); ``sq_norms`` (N, J) = ‖z‖² of each sample, computed once so that every
    block of a chunked computation reuses the same numbers.
    """

    samples: torch.Tensor
    sq_norms: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    tensor_fields: ClassVar[tuple[str, ...]] = ("samples", "sq_norms")
    kind: ClassVar[str] = "gaussian_samples"

    def __post_init__(self) -> None:
        if self.samples.dim() != 3:
            raise ValueError(f"GaussianSamples.samples must be (N, J, D), got {tuple(self.samples.shape)}")
        if self.sq_norms.shape != self.samples.shape[:2]:
            raise ValueError(
                f"GaussianSamples.sq_norms must be (N, J) = {tuple(self.samples.shape[:2])}, "
                f"got {tuple(self.sq_norms.shape)}"
            )

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])


def draw_samples(
    emb: GaussianEmbedding, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N, J, D) reparameterised samples z = μ + σ ⊙ ε, ε ~ N(0, I) (differentiable in μ and logvar)."""
    mean, logvar = emb.mean, emb.logvar
    eps = torch.randn(
        (mean.shape[0], num_samples, mean.shape[1]), generator=generator, device=mean.device, dtype=mean.dtype
    )
    return mean[:, None, :] + (0.5 * logvar)[:, None, :].exp() * eps


def kl_to_standard_normal(emb: GaussianEmbedding, reduction: str = "sum_dims") -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_d (σ² + μ² − 1 − log σ²).

    ``reduction``: ``sum`` sums over items and dimensions (the official PCME VIB); ``sum_dims`` sums
    over dimensions and averages over items; ``mean`` averages over items and dimensions (PCME++).
    """
    per_dim = 0.5 * (emb.logvar.exp() + emb.mean.pow(2) - 1.0 - emb.logvar)
    if reduction == "sum":
        return per_dim.sum()
    if reduction == "sum_dims":
        return per_dim.sum(-1).mean()
    if reduction == "mean":
        return per_dim.mean()
    raise ValueError(f"unknown KL reduction {reduction!r}; expected 'sum', 'sum_dims' or 'mean'")


def closed_form_sampled_distance(query: GaussianEmbedding, gallery: GaussianEmbedding) -> torch.Tensor:
    """(N, M) CSD = ‖μ_q − μ_g‖² + Σ_d σ²_q + Σ_d σ²_g: one matmul plus two bias vectors."""
    q_bias = query.mean.pow(2).sum(-1) + query.logvar.exp().sum(-1)  # (N,)
    g_bias = gallery.mean.pow(2).sum(-1) + gallery.logvar.exp().sum(-1)  # (M,)
    return q_bias[:, None] + g_bias[None, :] - 2.0 * (query.mean @ gallery.mean.t())


def check_gaussian(emb: Any, who: str) -> GaussianEmbedding:
    """Return ``emb`` if it is a GaussianEmbedding, else raise naming ``who`` needed it."""
    if not isinstance(emb, GaussianEmbedding):
        raise TypeError(f"{who} needs GaussianEmbedding inputs (mean, logvar); got {type(emb).__name__}")
    return emb
