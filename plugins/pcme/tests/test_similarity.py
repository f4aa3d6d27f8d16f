"""match_prob, csd and mean_cosine against brute-force references; the engine's chunking is exact."""
import math

import pytest
import torch

from xmodalzoo.embeddings import GaussianEmbedding, PointEmbedding
from xmodalzoo.similarity.engine import similarity_matrix, topk
from xmodalzoo_pcme.similarity import (
    ClosedFormSampledDistance,
    CSDConfig,
    MatchProb,
    MatchProbConfig,
    MeanCosine,
    inverse_softplus,
    logit_state_from_official,
)
from xmodalzoo_pcme.gaussian import GaussianSamples


def gaussian(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)
    return GaussianEmbedding(mu, torch.randn(n, d, generator=g, dtype=dtype) * 0.5 - 2.0)


def official_prob(x, y, a, b):
    """The official PCME per-sample-pair probability, by hand: s = −a·sqrt(‖x − y‖² + 1e-6) + b, e^s / (e^s + e^−s)."""
    s = -a * math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(x, y)) + 1e-6) + b
    return math.exp(s) / (math.exp(s) + math.exp(-s))


def ref_match_prob(zq, zg, a, b):
    """Explicit loops over pairs and sample pairs."""
    n, j, _ = zq.shape
    m, j2, _ = zg.shape
    out = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        for k in range(m):
            acc = 0.0
            for s in range(j):
                for t in range(j2):
                    acc += official_prob(zq[i, s].tolist(), zg[k, t].tolist(), a, b)
            out[i, k] = acc / (j * j2)
    return out


def seeded_samples(emb, j, seed):
    eps = torch.randn((len(emb), j, emb.dim), generator=torch.Generator().manual_seed(seed), dtype=emb.dtype)
    return emb.mean[:, None] + (0.5 * emb.logvar).exp()[:, None] * eps


def test_softplus_parameterisation_starts_at_the_configured_values():
    sim = MatchProb(MatchProbConfig(init_scale=15.0, init_shift=-3.0))
    assert math.isclose(sim.scale.item(), 15.0, rel_tol=1e-6)
    assert sim.shift.item() == -3.0
    assert {n for n, _ in sim.named_parameters()} == {"logit.raw_scale", "logit.shift"}
    assert set(sim.state_dict()) == {"logit.raw_scale", "logit.shift"}
    fixed = MatchProb(MatchProbConfig(learnable=False, init_scale=0.5))
    assert not list(fixed.parameters()) and set(fixed.state_dict()) == {"logit.raw_scale", "logit.shift"}
    assert math.isclose(torch.nn.functional.softplus(torch.tensor(inverse_softplus(0.5))).item(), 0.5, rel_tol=1e-6)


def test_match_prob_engine_equals_brute_force_with_the_engine_seeds():
    sim = MatchProb(MatchProbConfig(num_samples=3, init_scale=4.0, init_shift=2.0))
    q, g = gaussian(3, 6, 0), gaussian(4, 6, 1)
    out = similarity_matrix(sim, q, g, device="cpu", seed=5)
    ref = ref_match_prob(seeded_samples(q, 3, 5), seeded_samples(g, 3, 6), sim.scale.item(), sim.shift.item())
    assert torch.allclose(out.double(), ref, atol=1e-5)


@pytest.mark.parametrize("pairs_per_block", [16 * 16, 16 * 21, 16 * 37, 16 * 53, 17 * 53, 35 * 53])
def test_match_prob_chunked_equals_unchunked_exactly(pairs_per_block):
    sim = MatchProb(MatchProbConfig(num_samples=7))
    q, g = gaussian(40, 16, 2), gaussian(53, 16, 3)
    full = similarity_matrix(sim, q, g, device="cpu", max_bytes=1 << 30)
    budget = pairs_per_block * sim.pair_bytes(q, g)
    chunked = similarity_matrix(sim, q, g, device="cpu", max_bytes=budget)
    assert torch.equal(full, chunked)
    assert torch.equal(full, similarity_matrix(sim, q, g, device="cpu", max_bytes=1 << 30))  # deterministic
    assert not torch.equal(full, similarity_matrix(sim, q, g, device="cpu", seed=1))  # the seed matters
    s, i = topk(sim, q, g, 4, device="cpu", max_bytes=budget * 2)
    order = torch.argsort(full, dim=1, descending=True, stable=True)[:, :4]
    assert torch.equal(i, order) and torch.equal(s, full.gather(1, order))


def test_match_prob_forward_modes():
    sim = MatchProb(MatchProbConfig(num_samples=4, init_scale=3.0, init_shift=1.0))
    q, g = gaussian(2, 5, 4), gaussian(3, 5, 5)
    sim.eval()
    with torch.no_grad():
        inplace = sim(q, g)
    with_grad = sim(q, g)  # the autograd path gives the same numbers
    assert torch.allclose(inplace, with_grad, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(inplace, sim(q, g))  # eval mode is seeded
    assert torch.equal(with_grad, sim(q, g))
    ref = ref_match_prob(seeded_samples(q, 4, 0), seeded_samples(g, 4, 1), sim.scale.item(), sim.shift.item())
    assert torch.allclose(inplace.double(), ref, atol=1e-5)
    sim.train()
    torch.manual_seed(0)
    a = sim(q, g)
    b = sim(q, g)
    assert not torch.equal(a, b)  # training draws fresh samples
    assert ((a > 0) & (a < 1)).all()


def test_a_converted_official_checkpoint_gives_the_official_probability():
    """negative_scale a = 15, shift b = 15 (the published COCO values, as an official checkpoint stores
    them) loaded through the converter: the probability of one hand-computed pair of single samples."""
    sim = MatchProb(MatchProbConfig(num_samples=1, init_scale=1.0, init_shift=0.0)).double().eval()
    sim.logit.load_state_dict(logit_state_from_official(15.0, 15.0))
    assert math.isclose(sim.scale.item(), 15.0, rel_tol=1e-12) and sim.shift.item() == 15.0
    x, y = [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]  # ‖x − y‖² = 0.36 + 0.04 + 0.64 = 1.04
    s = -15.0 * math.sqrt(1.04 + 1e-6) + 15.0
    want = math.exp(s) / (math.exp(s) + math.exp(-s))
    assert 0.1 < want < 0.5  # a pair whose probability the sigmoid convention changes a lot
    q = GaussianSamples(torch.tensor([[x]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64))
    g = GaussianSamples(torch.tensor([[y]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64))
    with torch.no_grad():
        inplace = sim(q, g).item()
    autograd = sim(q, g).item()  # the differentiable path
    assert math.isclose(inplace, want, rel_tol=1e-12) and math.isclose(autograd, want, rel_tol=1e-12)
    assert abs(want - 1.0 / (1.0 + math.exp(-s))) > 0.05  # the plain sigmoid of s would be far off


def test_distance_is_the_official_one_at_zero_separation():
    """A sample compared with itself: d = sqrt(0 + 1e-6) = 1e-3, not 0 (in both inference paths)."""
    sim = MatchProb(MatchProbConfig(num_samples=1, init_scale=40.0, init_shift=0.5)).double().eval()
    z = torch.tensor([[[0.3, -0.4, 1.2]]], dtype=torch.float64)
    distances = sim.pair_distances(z, z)
    assert distances.shape == (1, 1, 1, 1) and math.isclose(distances.item(), 1e-3, rel_tol=1e-9)
    want = official_prob(z[0, 0].tolist(), z[0, 0].tolist(), 40.0, 0.5)
    same = GaussianSamples(z, z.pow(2).sum(-1))
    with torch.no_grad():
        assert math.isclose(sim(same, same).item(), want, rel_tol=1e-9)
    assert math.isclose(sim(same, same).item(), want, rel_tol=1e-9)


def test_pair_distances_match_brute_force():
    g = torch.Generator().manual_seed(4)
    zq = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    zg = torch.randn(4, 2, 5, generator=g, dtype=torch.float64)
    out = MatchProb(MatchProbConfig()).double().pair_distances(zq, zg)
    assert out.shape == (2, 4, 3, 2)
    for i in range(2):
        for k in range(4):
            for s in range(3):
                for t in range(2):
                    ref = math.sqrt(sum((zq[i, s, d].item() - zg[k, t, d].item()) ** 2 for d in range(5)) + 1e-6)
                    assert math.isclose(out[i, k, s, t].item(), ref, rel_tol=1e-12)


def test_sampler_takes_given_draws():
    emb = gaussian(3, 4, 11, dtype=torch.float64)
    eps = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = MatchProb(MatchProbConfig(num_samples=7)).sample(emb, eps=eps)
    assert z.shape == (3, 5, 4)  # J from eps
    for i in range(3):
        for j in range(5):
            for d in range(4):
                want = emb.mean[i, d].item() + math.exp(emb.logvar[i, d].item() / 2) * eps[i, j, d].item()
                assert math.isclose(z[i, j, d].item(), want, rel_tol=1e-12)
    with pytest.raises(ValueError, match="eps must be"):
        MatchProb(MatchProbConfig()).sample(emb, eps=eps[:2])


def test_pair_logits_values_and_gradients_match_brute_force():
    sim = MatchProb(MatchProbConfig(num_samples=2, init_scale=2.0, init_shift=0.5)).double()
    zq = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    zg = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    out = sim.pair_logits(zq, zg)
    ref = torch.stack([torch.stack([torch.stack([torch.stack([
        -sim.scale * ((zq[i, s] - zg[k, t]).pow(2).sum() + 1e-6).sqrt() + sim.shift
        for t in range(2)]) for s in range(2)]) for k in range(3)]) for i in range(2)])
    assert out.shape == (2, 3, 2, 2) and torch.allclose(out, ref)
    w = torch.randn_like(out)
    params = (zq, zg, sim.logit.raw_scale, sim.logit.shift)
    for got, exp in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        assert torch.allclose(got, exp)


def test_match_prob_rejects_point_embeddings():
    sim = MatchProb(MatchProbConfig())
    with pytest.raises(TypeError, match="GaussianEmbedding"):
        sim(PointEmbedding(torch.randn(2, 3)), gaussian(2, 3, 0))


def test_csd_values_gradients_and_chunking():
    sim = ClosedFormSampledDistance(CSDConfig(init_scale=0.7, init_shift=1.5)).double()
    qm, qv = torch.randn(3, 4, dtype=torch.float64, requires_grad=True), torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    gm, gv = torch.randn(5, 4, dtype=torch.float64, requires_grad=True), torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    out = sim(GaussianEmbedding(qm, qv), GaussianEmbedding(gm, gv))
    a, b = sim.scale, sim.shift
    ref = torch.stack([torch.stack([
        -a * sum((qm[i, d] - gm[k, d]) ** 2 + qv[i, d].exp() + gv[k, d].exp() for d in range(4)) + b
        for k in range(5)]) for i in range(3)])
    assert torch.allclose(out, ref)
    w = torch.randn_like(out)
    params = (qm, qv, gm, gv, sim.logit.raw_scale, sim.logit.shift)
    for got, exp in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        assert torch.allclose(got, exp)
    with torch.no_grad():  # the in-place inference path gives the same numbers
        assert torch.allclose(sim(GaussianEmbedding(qm, qv), GaussianEmbedding(gm, gv)), ref)
    sim = ClosedFormSampledDistance(CSDConfig())
    q, g = gaussian(37, 8, 6), gaussian(41, 8, 7)
    full = similarity_matrix(sim, q, g, device="cpu")
    assert torch.equal(full, similarity_matrix(sim, q, g, device="cpu", max_bytes=16 * 19 * sim.pair_bytes(q, g)))


def test_mean_cosine_ignores_variance():
    q, g = gaussian(3, 5, 8), gaussian(4, 5, 9)
    out = similarity_matrix(MeanCosine(), q, g, device="cpu")
    for i in range(3):
        for k in range(4):
            ref = torch.dot(q.mean[i], g.mean[k]) / (q.mean[i].norm() * g.mean[k].norm())
            assert math.isclose(out[i, k].item(), ref.item(), abs_tol=1e-6)
    wider = GaussianEmbedding(g.mean, g.logvar + 3)
    assert torch.equal(out, similarity_matrix(MeanCosine(), q, wider, device="cpu"))
