"""csd and match_prob as one GEMM + epilogue (the engine's hook) against loops written from the formulas."""
from __future__ import annotations

import math

import torch

from xmodalzoo.plugin_api import GaussianEmbedding
from xmodalzoo.similarity.scorer import prepare_scorer
from xmodalzoo_pcme.similarity import ClosedFormSampledDistance, CSDConfig, MatchProb, MatchProbConfig


def gaussians(n: int, d: int, seed: int) -> GaussianEmbedding:
    gen = torch.Generator().manual_seed(seed)
    return GaussianEmbedding(torch.randn(n, d, generator=gen, dtype=torch.float64),
                             torch.randn(n, d, generator=gen, dtype=torch.float64) - 1)


def test_csd_gemm_form_equals_the_formula():
    sim = ClosedFormSampledDistance(CSDConfig(init_scale=3.0, init_shift=2.0))
    q, g = gaussians(5, 4, 0), gaussians(7, 4, 1)
    scorer = prepare_scorer(sim, q, g, torch.device("cpu"), 0)
    assert scorer.uses_gemm
    with torch.no_grad():
        got = scorer.block(slice(0, 5), slice(0, 7))
    a, b = float(sim.scale.detach()), float(sim.shift.detach())
    for i in range(5):
        for j in range(7):
            csd = sum((q.mean[i, k] - g.mean[j, k]) ** 2 + q.logvar[i, k].exp() + g.logvar[j, k].exp() for k in range(4))
            assert math.isclose(float(got[i, j]), -a * float(csd) + b, rel_tol=1e-6, abs_tol=1e-5)


def test_match_prob_gemm_form_equals_the_official_formula():
    sim = MatchProb(MatchProbConfig(num_samples=3, init_scale=2.0, init_shift=1.5))
    q, g = gaussians(4, 3, 2), gaussians(6, 3, 3)
    scorer = prepare_scorer(sim, q, g, torch.device("cpu"), 0)
    assert scorer.uses_gemm
    got = scorer.block(slice(0, 4), slice(0, 6))
    zq, zg = scorer.query.samples, scorer.gallery.samples  # the seeded samples the engine drew
    a, b = float(sim.scale.detach()), float(sim.shift.detach())
    for i in range(4):
        for j in range(6):
            total = 0.0
            for s in range(3):
                for t in range(3):
                    d = math.sqrt(sum(float(zq[i, s, k] - zg[j, t, k]) ** 2 for k in range(3)) + 1e-6)
                    logit = -a * d + b
                    total += math.exp(logit) / (math.exp(logit) + math.exp(-logit))  # official e^s/(e^s+e^-s)
            assert math.isclose(float(got[i, j]), total / 9, rel_tol=1e-6, abs_tol=1e-6)


def test_csd_operands_row_sums_are_the_one_shot_sums_over_several_chunks():
    from xmodalzoo_pcme.gaussian import _ROW_CHUNK, row_sums as _row_sums

    x = torch.randn(2 * _ROW_CHUNK + 37, 33, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(_row_sums(x, "square"), (x * x).sum(-1))
        assert torch.equal(_row_sums(x, "exp"), x.exp().sum(-1))
        z = x[:, :30].reshape(-1, 3, 10)  # samples (N, J, D): the squared norms the match probability uses
        assert torch.equal(_row_sums(z, "square"), z.pow(2).sum(-1))
    sim = ClosedFormSampledDistance(CSDConfig(init_scale=3.0, init_shift=2.0))
    q, g = gaussians(len(x), 6, 6), gaussians(300, 6, 7)
    with torch.no_grad():
        got = prepare_scorer(sim, q, g, torch.device("cpu"), 0).block(slice(0, len(x)), slice(0, 300))
    csd = ((q.mean[:, None] - g.mean[None]) ** 2).sum(-1) + q.logvar.exp().sum(-1)[:, None] + g.logvar.exp().sum(-1)[None]
    a, b = float(sim.scale.detach()), float(sim.shift.detach())
    torch.testing.assert_close(got.double(), -a * csd + b, rtol=1e-6, atol=1e-5)
