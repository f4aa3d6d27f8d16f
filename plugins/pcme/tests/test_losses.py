"""The pcme and pcmepp losses against brute-force references (values and gradients)."""
import math

import pytest
import torch

from xmodalzoo.embeddings import GaussianEmbedding, PointEmbedding
from xmodalzoo.losses.base import LossContext
from xmodalzoo_pcme.losses import (
    PCMELoss,
    PCMELossConfig,
    PCMEppLoss,
    PCMEppLossConfig,
    pseudo_positive_mask,
    soft_contrastive_nll,
    uniformity,
)
from xmodalzoo_pcme.similarity import ClosedFormSampledDistance, CSDConfig, MatchProb, MatchProbConfig

# 3 image rows, 5 captions; captions 0, 1 show image 0, caption 2 image 1, captions 3, 4 image 2
CAPTION_IMAGE = [0, 0, 1, 2, 2]
POSITIVES = torch.tensor([[CAPTION_IMAGE[t] == i for t in range(5)] for i in range(3)])


def leaves(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    mu = (0.4 * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_(True)
    lv = (0.3 * torch.randn(n, d, generator=g, dtype=torch.float64) - 2.0).requires_grad_(True)
    return mu, lv


def sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def official_distance(x, y):
    """The official PCME sampled distance: sqrt(‖x − y‖² + 1e-6), by explicit differences."""
    return torch.sqrt(((x - y) ** 2).sum() + 1e-6)


def official_match(s):
    """The official per-sample-pair probability of a match: e^s / (e^s + e^−s)."""
    return torch.exp(s) / (torch.exp(s) + torch.exp(-s))


def ref_kl(mu, lv, samples, vib_on, vib_kl, per_item):
    """Σ over dimensions (and items, unless ``per_item``) of the VIB term, with explicit loops.

    official: the official code's −½ Σ (1 + ls − m² − e^ls) with ls its log σ output (= logvar / 2);
    gaussian: ½ Σ (σ² + m² − 1 − log σ²).  m = the mean of the item's samples, or μ.
    """
    n, d_count = mu.shape
    total = 0.0
    for i in range(n):
        m = sum(samples[i]) / len(samples[i]) if vib_on == "samples" else mu[i]
        for d in range(d_count):
            if vib_kl == "official":
                ls = lv[i, d] / 2
                total = total - 0.5 * (1 + ls - m[d] ** 2 - torch.exp(ls))
            else:
                total = total + 0.5 * (torch.exp(lv[i, d]) + m[d] ** 2 - 1 - lv[i, d])
    return total / n if per_item else total


def ref_pcme_loss(mu_i, lv_i, mu_t, lv_t, eps_i, eps_t, a, b, beta, lam, reduction="sum",
                  vib_on="samples", vib_kl="official"):
    """Explicit loops over pairs, samples and dimensions, written from the official formulas."""
    J = eps_i.shape[1]
    zi = [[mu_i[i] + torch.exp(0.5 * lv_i[i]) * eps_i[i, j] for j in range(J)] for i in range(len(mu_i))]
    zt = [[mu_t[t] + torch.exp(0.5 * lv_t[t]) * eps_t[t, j] for j in range(J)] for t in range(len(mu_t))]
    total = 0.0
    for i in range(len(zi)):
        for t in range(len(zt)):
            p = sum(official_match(-a * official_distance(zi[i][j], zt[t][k]) + b)
                    for j in range(J) for k in range(J)) / J**2
            total = total - (torch.log(p) if POSITIVES[i, t] else torch.log(1 - p))
    # sum: the official objective, i2t and t2i each summed over all pairs, KL summed over items
    nll = 2 * total if reduction == "sum" else total / (len(zi) * len(zt))
    per_item = reduction != "sum"
    kl = ref_kl(mu_i, lv_i, zi, vib_on, vib_kl, per_item) + ref_kl(mu_t, lv_t, zt, vib_on, vib_kl, per_item)
    points = [z for row in zi + zt for z in row]
    pair_terms = [torch.exp(-2 * ((points[u] - points[v]) ** 2).sum())
                  for u in range(len(points)) for v in range(u + 1, len(points))]
    unif = torch.log(sum(pair_terms) / len(pair_terms))
    return nll + beta * kl + lam * unif


def draws(J, D, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3, J, D, generator=g, dtype=torch.float64),
            torch.randn(5, J, D, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("beta,lam,reduction,vib_on,vib_kl", [
    (0.0, 0.0, "sum", "samples", "official"),
    (1e-2, 0.5, "sum", "samples", "official"),
    (1e-2, 0.5, "mean", "samples", "official"),
    (1e-2, 0.0, "sum", "mean", "official"),
    (1e-2, 0.0, "sum", "samples", "gaussian"),
    (1e-2, 0.0, "mean", "mean", "gaussian"),
])
def test_pcme_loss_values_and_gradients_match_brute_force(beta, lam, reduction, vib_on, vib_kl):
    J, D = 3, 4
    sim = MatchProb(MatchProbConfig(num_samples=J, init_scale=2.0, init_shift=1.0)).double()
    mu_i, lv_i = leaves(3, D, 0)
    mu_t, lv_t = leaves(5, D, 1)
    eps_i, eps_t = draws(J, D)
    img, txt = GaussianEmbedding(mu_i, lv_i), GaussianEmbedding(mu_t, lv_t)
    zi, zt = sim.sample(img, eps=eps_i), sim.sample(txt, eps=eps_t)
    loss_fn = PCMELoss(PCMELossConfig(vib_weight=beta, uniformity_weight=lam, reduction=reduction,
                                      vib_on=vib_on, vib_kl=vib_kl))
    out = loss_fn.from_samples(img, txt, zi, zt, POSITIVES, sim)
    ref = ref_pcme_loss(mu_i, lv_i, mu_t, lv_t, eps_i, eps_t, sim.scale, sim.shift, beta, lam, reduction,
                        vib_on, vib_kl)
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=1e-10)
    params = (mu_i, lv_i, mu_t, lv_t, sim.logit.raw_scale, sim.logit.shift)
    for got, exp in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(ref, params)):
        assert torch.allclose(got, exp, rtol=1e-8, atol=1e-12)
    assert ("kl" in out.terms) == (beta > 0) and ("uniformity" in out.terms) == (lam > 0)


def test_the_vib_options_change_the_term():
    """The four VIB variants are four different numbers (each pinned above against the loops)."""
    J, D = 3, 4
    sim = MatchProb(MatchProbConfig(num_samples=J)).double()
    mu, lv = leaves(3, D, 0)
    eps, _ = draws(J, D)
    emb = GaussianEmbedding(mu, lv)
    z = sim.sample(emb, eps=eps)
    values = {(on, kl): PCMELoss(PCMELossConfig(vib_on=on, vib_kl=kl)).vib(emb, z).item()
              for on in ("samples", "mean") for kl in ("official", "gaussian")}
    assert len({round(v, 9) for v in values.values()}) == 4, values


def test_defaults_are_the_official_objective():
    cfg = PCMELossConfig()
    assert (cfg.reduction, cfg.vib_on, cfg.vib_kl, cfg.vib_weight, cfg.uniformity_weight) == \
        ("sum", "samples", "official", 1e-5, 0.0)


def test_soft_contrastive_nll_per_pair_values():
    """reduction="none": −log p or −log(1 − p) of every pair, p the official mean of e^s / (e^s + e^−s)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 2, 3, generator=g, dtype=torch.float64) * 2
    per_pair = soft_contrastive_nll(logits, POSITIVES, reduction="none")
    assert per_pair.shape == (3, 5)
    for i in range(3):
        for t in range(5):
            p = sum(math.exp(s) / (math.exp(s) + math.exp(-s)) for s in logits[i, t].flatten().tolist()) / 6
            want = -math.log(p) if POSITIVES[i, t] else -math.log(1 - p)
            assert math.isclose(per_pair[i, t].item(), want, rel_tol=1e-12)
    assert math.isclose(soft_contrastive_nll(logits, POSITIVES, "sum").item(), per_pair.sum().item(), rel_tol=1e-12)
    assert math.isclose(soft_contrastive_nll(logits, POSITIVES, "mean").item(), per_pair.mean().item(), rel_tol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        soft_contrastive_nll(logits, POSITIVES, "max")


def test_pcme_loss_is_stable_for_saturated_probabilities():
    """Far-apart positives with a large scale: p underflows in float32, the log-space loss does not."""
    sim = MatchProb(MatchProbConfig(num_samples=2, init_scale=15.0, init_shift=15.0))
    far = GaussianEmbedding(torch.full((1, 3), 10.0), torch.full((1, 3), -8.0))
    near = GaussianEmbedding(torch.zeros(1, 3, requires_grad=True), torch.full((1, 3), -8.0))
    out = PCMELoss(PCMELossConfig(vib_weight=0.0))(far, near, LossContext(torch.ones(1, 1, dtype=torch.bool), sim))
    # two directions × −log sigmoid(2s), s = −15·‖(10, 10, 10)‖ + 15 ≈ −244.8: ≈ 2 × 489.6
    assert torch.isfinite(out.loss) and math.isclose(out.loss.item(), 2 * 2 * (15 * math.sqrt(300) - 15), rel_tol=1e-2)
    (grad,) = torch.autograd.grad(out.loss, near.mean)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_pcme_loss_forward_draws_samples_and_checks_inputs():
    sim = MatchProb(MatchProbConfig(num_samples=4))
    mu_i, lv_i = leaves(3, 6, 3)
    mu_t, lv_t = leaves(5, 6, 4)
    ctx = LossContext(POSITIVES, sim)
    out = PCMELoss(PCMELossConfig())(GaussianEmbedding(mu_i.float(), lv_i.float()),
                                     GaussianEmbedding(mu_t.float(), lv_t.float()), ctx)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert set(out.terms) == {"nll", "kl", "scale", "shift"}
    with pytest.raises(TypeError, match="match_prob"):
        PCMELoss(PCMELossConfig())(GaussianEmbedding(mu_i, lv_i), GaussianEmbedding(mu_t, lv_t),
                                   LossContext(POSITIVES, ClosedFormSampledDistance(CSDConfig())))
    with pytest.raises(TypeError, match="GaussianEmbedding"):
        PCMELoss(PCMELossConfig())(PointEmbedding(mu_i), GaussianEmbedding(mu_t, lv_t), ctx)


def test_uniformity_matches_pairwise_loops():
    x = torch.randn(6, 3, dtype=torch.float64)
    terms = [math.exp(-2 * float(((x[u] - x[v]) ** 2).sum())) for u in range(6) for v in range(u + 1, 6)]
    assert math.isclose(uniformity(x).item(), math.log(sum(terms) / len(terms)), rel_tol=1e-10)


def ref_pcmepp_loss(mu_i, lv_i, mu_t, lv_t, a, b, omega, beta):
    D = mu_i.shape[1]
    logit = [[-a * sum((mu_i[i, d] - mu_t[t, d]) ** 2 + torch.exp(lv_i[i, d]) + torch.exp(lv_t[t, d])
                       for d in range(D)) + b for t in range(5)] for i in range(3)]
    pos = POSITIVES.tolist()

    def direction(rows, n_rows, n_cols):
        total, pseudo_count = 0.0, 0
        for r in range(n_rows):
            true = [rows(r, c) for c in range(n_cols) if pos_of(r, c)]
            threshold = min(x.item() for x in true) if true and omega > 0 else math.inf
            for c in range(n_cols):
                x = rows(r, c)
                if pos_of(r, c):
                    target, weight = 1.0, 1.0
                elif x.item() >= threshold:
                    target, weight = 1.0, omega
                    pseudo_count += 1
                else:
                    target, weight = 0.0, 1.0
                total = total - weight * (target * torch.log(sigmoid(x)) + (1 - target) * torch.log(1 - sigmoid(x)))
        return total / (n_rows * n_cols), pseudo_count

    pos_of = lambda r, c: pos[r][c]  # noqa: E731
    i2t, n1 = direction(lambda r, c: logit[r][c], 3, 5)
    pos_of = lambda r, c: pos[c][r]  # noqa: E731
    t2i, n2 = direction(lambda r, c: logit[c][r], 5, 3)
    kl = sum(0.5 * (torch.exp(lv) + mu ** 2 - 1 - lv).mean() for mu, lv in ((mu_i, lv_i), (mu_t, lv_t)))
    return i2t + t2i + beta * kl, n1 + n2


@pytest.mark.parametrize("omega", [0.0, 0.1])
def test_pcmepp_loss_values_and_gradients_match_brute_force(omega):
    sim = ClosedFormSampledDistance(CSDConfig(init_scale=3.0, init_shift=2.0)).double()
    mu_i, lv_i = leaves(3, 4, 5)
    mu_t, lv_t = leaves(5, 4, 6)
    loss_fn = PCMEppLoss(PCMEppLossConfig(pseudo_positive_weight=omega, vib_weight=0.05))
    out = loss_fn(GaussianEmbedding(mu_i, lv_i), GaussianEmbedding(mu_t, lv_t), LossContext(POSITIVES, sim))
    ref, pseudo = ref_pcmepp_loss(mu_i, lv_i, mu_t, lv_t, sim.scale, sim.shift, omega, 0.05)
    assert (pseudo > 0) == (omega > 0)  # the case exercises pseudo-positives; ω = 0 turns them off
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=1e-10)
    params = (mu_i, lv_i, mu_t, lv_t, sim.logit.raw_scale, sim.logit.shift)
    for got, exp in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(ref, params)):
        assert torch.allclose(got, exp, rtol=1e-8, atol=1e-12)


def test_pseudo_positives_need_a_true_pair_in_the_row():
    logits = torch.tensor([[0.5, 0.9, 0.1], [3.0, 2.0, 1.0]])
    pos = torch.tensor([[True, False, False], [False, False, False]])
    assert pseudo_positive_mask(logits, pos).tolist() == [[False, True, False], [False, False, False]]


def test_pcmepp_loss_needs_csd():
    mu, lv = leaves(3, 4, 7)
    with pytest.raises(TypeError, match="csd"):
        PCMEppLoss(PCMEppLossConfig())(GaussianEmbedding(mu, lv), GaussianEmbedding(mu, lv),
                                       LossContext(torch.eye(3, dtype=torch.bool), MatchProb(MatchProbConfig())))


def test_soft_contrastive_loss_gives_ambiguous_captions_larger_variance():
    """The mechanism behind PCME's uncertainty, on free parameters: a caption whose image has 7
    indistinguishable look-alikes in the batch (all labelled non-matching) learns a larger σ² than a
    caption whose image is unique.  Image embeddings are fixed; caption means and log-variances learn."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 300 small steps: one thread is fastest
    try:
        ambiguous, specific = _train_caption_variances(steps=300)
    finally:
        torch.set_num_threads(threads)
    assert ambiguous > 1.5 * specific, (ambiguous, specific)


def _train_caption_variances(steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    d, clusters, size, distinct = 16, 4, 8, 16
    centers = torch.nn.functional.normalize(torch.randn(clusters + distinct, d), dim=-1)
    image_cluster = torch.cat([torch.arange(clusters).repeat_interleave(size), torch.arange(clusters, clusters + distinct)])
    images = GaussianEmbedding(centers[image_cluster], torch.full((len(image_cluster), d), -6.0))
    n = len(image_cluster)
    cap_x = torch.randn(n, d, requires_grad=True)
    cap_lv = torch.full((n, d), -6.0, requires_grad=True)
    sim = MatchProb(MatchProbConfig(num_samples=8, init_scale=5.0, init_shift=5.0, learnable=False))
    loss_fn = PCMELoss(PCMELossConfig(vib_weight=0.0))
    opt = torch.optim.Adam([cap_x, cap_lv], lr=2e-2)
    ctx = LossContext(torch.eye(n, dtype=torch.bool), sim)
    for _ in range(steps):
        captions = GaussianEmbedding(torch.nn.functional.normalize(cap_x, dim=-1), cap_lv)
        loss = loss_fn(images, captions, ctx).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    variance = cap_lv.detach().exp().mean(-1)
    return float(variance[: clusters * size].mean()), float(variance[clusters * size:].mean())
