"""Sampling and closed-form quantities of diagonal Gaussian embeddings.

Convention used everywhere in this plugin: a head outputs ``logvar`` = log σ² (the PCME++ choice),
so σ = exp(logvar / 2).  (The official PCME code samples with exp(log σ) as a std but treats the same
tensor as a log-variance in its KL; a converted PCME checkpoint needs ``logvar = 2 · logsigma``, and
``kl_to_standard_normal(..., form="official")`` reproduces that KL.)
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
    emb: GaussianEmbedding,
    num_samples: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, J, D) reparameterised samples z = μ + σ ⊙ ε, ε ~ N(0, I) (differentiable in μ and logvar).

    ``eps`` (N, J, D) supplies the standard-normal draws (then ``generator`` is unused), so that a
    caller can reproduce a given set of samples exactly.
    """
    mean, logvar = emb.mean, emb.logvar
    shape = (mean.shape[0], num_samples, mean.shape[1])
    if eps is None:
        eps = torch.randn(shape, generator=generator, device=mean.device, dtype=mean.dtype)
        if not (torch.is_grad_enabled() and (mean.requires_grad or logvar.requires_grad)):
            # the same numbers, without a second (N, J, D) tensor: mean + (σ ⊙ ε) in place on ε
            return eps.mul_((0.5 * logvar)[:, None, :].exp()).add_(mean[:, None, :])
    elif tuple(eps.shape) != shape:
        raise ValueError(f"eps must be (N, J, D) = {shape}, got {tuple(eps.shape)}")
    else:
        eps = eps.to(device=mean.device, dtype=mean.dtype)
    return mean[:, None, :] + (0.5 * logvar)[:, None, :].exp() * eps


def kl_to_standard_normal(
    emb: GaussianEmbedding,
    reduction: str = "sum_dims",
    form: str = "gaussian",
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL-to-N(0, I) regulariser of Gaussian embeddings.

    ``form``: ``gaussian`` is the KL of the embedding's own N(m, σ²), ½ Σ_d (σ² + m² − 1 − log σ²);
    ``official`` is the official PCME code's term, which feeds its log σ output into the log-variance
    slot of that formula: ½ Σ_d (σ + m² − 1 − log σ) (the KL of N(m, σ) with variance σ).
    ``mean`` (N, D) replaces μ as m, e.g. the mean of the drawn samples (the official PCME VIB).
    ``reduction``: ``sum`` sums over items and dimensions (the official PCME VIB); ``sum_dims`` sums
    over dimensions and averages over items; ``mean`` averages over items and dimensions (PCME++).
    """
    m = emb.mean if mean is None else mean
    if m.shape != emb.logvar.shape:
        raise ValueError(f"KL mean {tuple(m.shape)} does not match logvar {tuple(emb.logvar.shape)}")
    if form == "gaussian":
        log_v = emb.logvar
    elif form == "official":
        log_v = 0.5 * emb.logvar  # log σ, used as if it were log σ²
    else:
        raise ValueError(f"unknown KL form {form!r}; expected 'gaussian' or 'official'")
    per_dim = 0.5 * (log_v.exp() + m.pow(2) - 1.0 - log_v)
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


#: rows per chunk of :func:`row_sums` (its temporary stays in cache, and is not a fresh allocation)
_ROW_CHUNK = 256


def row_sums(x: torch.Tensor, op: str) -> torch.Tensor:
    """(...,) ``(x * x).sum(-1)`` (``op="square"``) or ``x.exp().sum(-1)`` (``op="exp"``) of (..., D) ``x``,
    in row chunks: the same numbers as the one-shot expression (each row is reduced alone) without
    a temporary of ``x``'s size."""
    if op not in ("square", "exp"):
        raise ValueError(f"row_sums op must be 'square' or 'exp', got {op!r}")
    if torch.is_grad_enabled() and x.requires_grad:
        return (x * x if op == "square" else x.exp()).sum(-1)
    lead, rows = x.shape[:-1], x.reshape(-1, x.shape[-1])
    out = x.new_empty(rows.shape[0])
    buf = x.new_empty(min(_ROW_CHUNK, rows.shape[0]), x.shape[-1])
    for r in range(0, rows.shape[0], _ROW_CHUNK):
        part = rows[r : r + _ROW_CHUNK]
        tmp = buf[: len(part)]
        torch.mul(part, part, out=tmp) if op == "square" else torch.exp(part, out=tmp)
        torch.sum(tmp, -1, out=out[r : r + _ROW_CHUNK])
    return out.view(lead)
