"""PCME cases for benchmarks/similarity_engine.py: Monte-Carlo match probability (J = 7) and PCME++'s CSD.

``build(n, m, d, device)`` makes random Gaussian embeddings (unit-norm means, σ² around e^-4) and the
similarity; ``loop(sim, query, gallery, n_queries)`` is the per-query evaluation of the official code:
the gallery's samples are drawn once, then for each query its J samples are drawn, the J × (M·J)
distances sqrt(‖z − z'‖² + 1e-6) computed, the official probabilities e^s / (e^s + e^−s) averaged over
the J² sample pairs and the row argsorted.
"""
from __future__ import annotations

from typing import Any

import torch

from xmodalzoo.embeddings import GaussianEmbedding
from xmodalzoo_pcme.gaussian import draw_samples
from xmodalzoo_pcme.similarity import ClosedFormSampledDistance, CSDConfig, MatchProb, MatchProbConfig

J = 7


def random_gaussians(count: int, d: int, gen: torch.Generator, device: torch.device) -> GaussianEmbedding:
    mean = torch.nn.functional.normalize(torch.randn(count, d, generator=gen), dim=-1)
    logvar = torch.randn(count, d, generator=gen) * 0.5 - 4.0
    return GaussianEmbedding(mean.to(device), logvar.to(device))


def build_match_prob(n: int, m: int, d: int, device: torch.device) -> tuple[Any, Any, Any]:
    gen = torch.Generator().manual_seed(0)
    sim = MatchProb(MatchProbConfig(num_samples=J, init_scale=15.0, init_shift=15.0)).to(device)
    return sim, random_gaussians(n, d, gen, device), random_gaussians(m, d, gen, device)


def loop_match_prob(sim: MatchProb, query: GaussianEmbedding, gallery: GaussianEmbedding, n_queries: int) -> None:
    """Official-style evaluation: one query at a time against every gallery item's J samples."""
    gen = torch.Generator(device=query.device).manual_seed(0)
    gallery_z = draw_samples(gallery, J, gen).reshape(-1, gallery.dim)  # (M·J, D), drawn once
    a, b = sim.scale, sim.shift
    for i in range(n_queries):
        query_z = draw_samples(query[i], J, gen)[0]  # (J, D)
        dist = (torch.cdist(query_z, gallery_z).pow(2) + 1e-6).sqrt()  # (J, M·J)
        logits = -a * dist + b
        prob = (logits.exp() / (logits.exp() + (-logits).exp())).view(J, len(gallery), J).mean(dim=(0, 2))
        torch.argsort(prob, descending=True)


def build_csd(n: int, m: int, d: int, device: torch.device) -> tuple[Any, Any, Any]:
    gen = torch.Generator().manual_seed(0)
    sim = ClosedFormSampledDistance(CSDConfig()).to(device)
    return sim, random_gaussians(n, d, gen, device), random_gaussians(m, d, gen, device)


def loop_csd(sim: ClosedFormSampledDistance, query: GaussianEmbedding, gallery: GaussianEmbedding,
             n_queries: int) -> None:
    """Per-query CSD: ‖μ_q − μ_g‖² + Σσ²_q + Σσ²_g against the whole gallery, then argsort."""
    gallery_var = gallery.logvar.exp().sum(-1)
    a, b = sim.scale, sim.shift
    for i in range(n_queries):
        csd = (query.mean[i] - gallery.mean).pow(2).sum(-1) + query.logvar[i].exp().sum() + gallery_var
        torch.argsort(-a * csd + b, descending=True)


CASES = {
    "match_prob": {"build": build_match_prob, "loop": loop_match_prob},
    "csd": {"build": build_csd, "loop": loop_csd},
}
