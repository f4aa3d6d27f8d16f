"""Sampling, KL and closed-form sampled distance of Gaussian embeddings against independent references."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from xmodalzoo.embeddings import GaussianEmbedding
from xmodalzoo_pcme.gaussian import (
    GaussianSamples,
    closed_form_sampled_distance,
    draw_samples,
    kl_to_standard_normal,
)


def gaussian(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype) - 1


def test_samples_use_std_from_logvar_and_are_reparameterised():
    mu, lv = gaussian(3, 4, 0)
    mu.requires_grad_(True)
    lv.requires_grad_(True)
    z = draw_samples(GaussianEmbedding(mu, lv), 5, torch.Generator().manual_seed(7))
    eps = torch.randn((3, 5, 4), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for i in range(3):
        for j in range(5):
            for d in range(4):
                expected = mu[i, d] + math.sqrt(math.exp(lv[i, d].item())) * eps[i, j, d]
                assert torch.isclose(z[i, j, d], expected, rtol=1e-12)
    gmu, glv = torch.autograd.grad(z.sum(), (mu, lv))
    assert torch.allclose(gmu, torch.full_like(mu, 5.0))
    assert torch.allclose(glv, (0.5 * (0.5 * lv).exp()[:, None] * eps).sum(1))


def test_kl_matches_torch_distributions():
    mu, lv = gaussian(4, 6, 1)
    emb = GaussianEmbedding(mu, lv)
    per_dim = kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    assert torch.allclose(kl_to_standard_normal(emb, "sum_dims"), per_dim.sum(1).mean())
    assert torch.allclose(kl_to_standard_normal(emb, "mean"), per_dim.mean())
    assert torch.allclose(kl_to_standard_normal(emb, "sum"), per_dim.sum())
    with pytest.raises(ValueError, match="reduction"):
        kl_to_standard_normal(emb, "max")


def test_official_kl_form_and_a_given_mean():
    """form="official": −½ Σ (1 + ls − m² − e^ls) with ls = log σ = logvar / 2 (the official PCME code);
    ``mean`` replaces μ as m."""
    mu, lv = gaussian(3, 4, 6)
    m = torch.randn(3, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    emb = GaussianEmbedding(mu, lv)
    want = sum(-0.5 * (1 + lv[i, d].item() / 2 - m[i, d].item() ** 2 - math.exp(lv[i, d].item() / 2))
               for i in range(3) for d in range(4))
    assert math.isclose(kl_to_standard_normal(emb, "sum", form="official", mean=m).item(), want, rel_tol=1e-12)
    want_gaussian = sum(0.5 * (math.exp(lv[i, d].item()) + m[i, d].item() ** 2 - 1 - lv[i, d].item())
                        for i in range(3) for d in range(4))
    assert math.isclose(kl_to_standard_normal(emb, "sum", mean=m).item(), want_gaussian, rel_tol=1e-12)
    with pytest.raises(ValueError, match="KL form"):
        kl_to_standard_normal(emb, form="std")
    with pytest.raises(ValueError, match="does not match"):
        kl_to_standard_normal(emb, mean=m[:, :2])


def test_csd_matches_brute_force():
    qm, ql = gaussian(3, 5, 2)
    gm, gl = gaussian(4, 5, 3)
    out = closed_form_sampled_distance(GaussianEmbedding(qm, ql), GaussianEmbedding(gm, gl))
    for i in range(3):
        for k in range(4):
            ref = sum((qm[i, d] - gm[k, d]) ** 2 + math.exp(ql[i, d]) + math.exp(gl[k, d]) for d in range(5))
            assert math.isclose(out[i, k].item(), float(ref), rel_tol=1e-10)


def test_csd_is_the_expected_squared_distance_of_samples():
    """CSD = E‖z − z'‖² for independent samples (Monte-Carlo check with many samples)."""
    qm, ql = gaussian(1, 3, 4)
    gm, gl = gaussian(1, 3, 5)
    gen = torch.Generator().manual_seed(0)
    zq = draw_samples(GaussianEmbedding(qm, ql), 200_000, gen)[0]
    zg = draw_samples(GaussianEmbedding(gm, gl), 200_000, gen)[0]
    mc = (zq - zg).pow(2).sum(-1).mean()
    exact = closed_form_sampled_distance(GaussianEmbedding(qm, ql), GaussianEmbedding(gm, gl))[0, 0]
    assert math.isclose(mc.item(), exact.item(), rel_tol=2e-2)


def test_gaussian_samples_shape_checks():
    z = torch.randn(2, 3, 4)
    assert len(GaussianSamples(z, z.pow(2).sum(-1))[1:]) == 1
    with pytest.raises(ValueError, match="sq_norms"):
        GaussianSamples(z, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(N, J, D\)"):
        GaussianSamples(torch.randn(2, 4), torch.zeros(2))
