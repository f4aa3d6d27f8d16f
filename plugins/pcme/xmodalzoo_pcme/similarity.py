"""PCME similarities over Gaussian embeddings: Monte-Carlo match probability, PCME++'s closed-form
sampled distance, and the cosine of the means.

Both learnable similarities compute a logit s = −a·distance + b with a = softplus(raw_scale) (always
positive, gradient never vanishes; softplus(15) = 15 to 7 digits so it behaves like the raw scalar of
the official code) and a raw shift b.  Both are parameters of the similarity, hence of the model, and
are saved with it.  a and b mean what the official code's ``negative_scale`` and ``shift`` mean:

* ``match_prob`` (PCME) turns s into a probability with the official e^s / (e^s + e^−s) = sigmoid(2s)
  and measures the sampled distance as sqrt(‖z − z'‖² + 1e-6);
* ``csd`` (PCME++) uses s as the logit of a plain sigmoid (the official BCE-with-logits).

Converting an official PCME checkpoint: :func:`logit_state_from_official` (``raw_scale =
inverse_softplus(negative_scale)``, ``shift = shift``; no factor of 2 anywhere).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from xmodalzoo.plugin_api import (
    ComponentConfig, Embedding, GaussianEmbedding, PointEmbedding, SearchVectors, Similarity, ordered_sum,
)

from .gaussian import GaussianSamples, closed_form_sampled_distance, draw_samples, row_sums


def inverse_softplus(x: float) -> float:
    """The raw value r with softplus(r) = x (x > 0)."""
    if x <= 0:
        raise ValueError(f"softplus only reaches positive values, got {x}")
    return x + math.log(-math.expm1(-x))


class MatchLogit(nn.Module):
    """s(d) = −a·d + b with a = softplus(raw_scale) > 0 and b = shift (learnable or fixed)."""

    def __init__(self, init_scale: float, init_shift: float, learnable: bool = True) -> None:
        super().__init__()
        raw = torch.tensor(inverse_softplus(init_scale))
        shift = torch.tensor(float(init_shift))
        if learnable:
            self.raw_scale = nn.Parameter(raw)
            self.shift = nn.Parameter(shift)
        else:
            self.register_buffer("raw_scale", raw)
            self.register_buffer("shift", shift)

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return -self.scale * distance + self.shift


def logit_state_from_official(negative_scale: float, shift: float) -> dict[str, torch.Tensor]:
    """The :class:`MatchLogit` state (``raw_scale``, ``shift``) for an official PCME or PCME++
    checkpoint's ``criterion.negative_scale`` (a) and ``criterion.shift`` (b).

    a and b keep their official values: ``match_prob`` applies the official sigmoid(2s) itself.
    Load it with ``similarity.logit.load_state_dict(logit_state_from_official(a, b))``; the tensors
    are float64, so loading rounds them once, to the module's own dtype.
    """
    raw = inverse_softplus(float(negative_scale))
    return {"raw_scale": torch.tensor(raw, dtype=torch.float64), "shift": torch.tensor(float(shift), dtype=torch.float64)}


def distance_vectors(mean: torch.Tensor, bias: torch.Tensor, role: str) -> SearchVectors:
    """Augmented rows (N, 1, D + 1) of means (N, D) and per-item ``bias`` (N,): query rows [2 μ_q, 1],
    gallery rows [μ_g, −bias_g], whose inner product is 2 μ_q·μ_g − bias_g.  With bias_g = ‖μ_g‖² it is
    ‖μ_q‖² − ‖μ_q − μ_g‖²: a query ranks its gallery by the distance of the means (the query's own term
    changes no ranking).  Marked exact; callers say otherwise when the similarity is not a function of it.
    """
    mean = mean.float()
    if role == "query":
        rows = torch.cat([2.0 * mean, torch.ones_like(mean[:, :1])], dim=1)
    else:
        rows = torch.cat([mean, -bias.float()[:, None]], dim=1)
    return SearchVectors(rows[:, None, :], exact=True)


# ---------------------------------------------------------------------------------------------- match_prob


#: added to the squared distance under the square root, as the official PCME code does
DISTANCE_EPS = 1e-6


def sampled_distance(sq_dist: torch.Tensor) -> torch.Tensor:
    """The official PCME distance sqrt(‖x − y‖² + 1e-6) from squared distances.

    Squared distances computed by the expansion ‖x‖² + ‖y‖² − 2x·y can come out slightly negative
    by rounding; they are clamped at 0 first (a true squared distance never is negative).
    """
    return (sq_dist.clamp(min=0) + DISTANCE_EPS).sqrt()


def match_probability(logits: torch.Tensor) -> torch.Tensor:
    """PCME's probability of a sample-pair logit s: e^s / (e^s + e^−s) = sigmoid(2s) (official code)."""
    return torch.sigmoid(2.0 * logits)


class MatchProbConfig(ComponentConfig):
    """Options of the Monte-Carlo match probability (PCME)."""

    num_samples: int = Field(7, ge=1, description="J samples per item (train and test); J² distances per pair")
    init_scale: float = Field(
        15.0, gt=0, description="initial a (official negative_scale) in sigmoid(2·(−a·d + b)) (COCO 15, CUB 5)"
    )
    init_shift: float = Field(
        15.0, description="initial b (official shift) in sigmoid(2·(−a·d + b)) (COCO 15, CUB 5)"
    )
    learnable: bool = Field(True, description="learn a and b with the model (else keep them fixed)")
    seed: int = Field(0, description="seed of the samples when scoring unprepared embeddings in eval mode")


class MatchProb(Similarity):
    """p(match | q, g) ≈ (1/J²) Σ_j Σ_j' sigmoid(2·s_jj'), s_jj' = −a·d(z_j, z'_j') + b, z = μ + σ ⊙ ε.

    The conventions of the official PCME code: d(z, z') = sqrt(‖z − z'‖² + 1e-6) and the per-sample
    probability e^s / (e^s + e^−s) = sigmoid(2s), so a and b are the official ``negative_scale`` and
    ``shift`` (published COCO 15 / 15, CUB 5 / 5).

    Training mode draws reparameterised samples from the global RNG; eval mode (and :meth:`prepare`,
    which the engine calls once per set with its seeded generator) draws them from a seeded
    generator, so evaluation is deterministic and chunking does not change the result.
    """

    accepts = (GaussianEmbedding, GaussianSamples)

    def __init__(self, cfg: MatchProbConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_samples = cfg.num_samples
        self.logit = MatchLogit(cfg.init_scale, cfg.init_shift, cfg.learnable)

    @property
    def scale(self) -> torch.Tensor:
        return self.logit.scale

    @property
    def shift(self) -> torch.Tensor:
        return self.logit.shift

    def sample(
        self, emb: GaussianEmbedding, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, J, D) reparameterised samples of each item; ``eps`` (N, J, D) gives the standard-normal
        draws (J is then ``eps.shape[1]``)."""
        self.check(emb, emb)
        return draw_samples(emb, self.num_samples if eps is None else int(eps.shape[1]), generator, eps)

    def pair_distances(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        """(N, M, J, J') official distances sqrt(‖z_j − z'_j'‖² + 1e-6) of every sample pair (differentiable).

        ``query`` (N, J, D) and ``gallery`` (M, J', D) are samples, e.g. from :meth:`sample`.
        """
        n, j, d = query.shape
        m, j2, _ = gallery.shape
        sq = (query.pow(2).sum(-1).reshape(n * j, 1) + gallery.pow(2).sum(-1).reshape(1, m * j2)
              - 2.0 * query.reshape(n * j, d) @ gallery.reshape(m * j2, d).t())
        return sampled_distance(sq).view(n, j, m, j2).permute(0, 2, 1, 3)

    def pair_logits(self, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        """(N, M, J, J') logits s = −a·d + b of every sample pair; the probability is sigmoid(2s)."""
        return self.logit(self.pair_distances(query, gallery))

    def prepare(self, emb: Embedding, generator: torch.Generator | None = None) -> GaussianSamples:
        """Draw the J samples of every item once (seeded by ``generator``) and their squared norms."""
        if isinstance(emb, GaussianSamples):
            return emb
        self.check(emb, emb)
        z = draw_samples(emb, self.num_samples, generator)  # type: ignore[arg-type]
        return GaussianSamples(z, row_sums(z, "square"))

    def _eval_samples(self, emb: Embedding, seed: int) -> GaussianSamples:
        if isinstance(emb, GaussianSamples):
            return emb
        gen = torch.Generator(device=emb.device)
        gen.manual_seed(seed)
        return self.prepare(emb, gen)

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        if self.training:
            zq = query.samples if isinstance(query, GaussianSamples) else self.sample(query)  # type: ignore[arg-type]
            zg = gallery.samples if isinstance(gallery, GaussianSamples) else self.sample(gallery)  # type: ignore[arg-type]
            return match_probability(self.pair_logits(zq, zg)).mean((2, 3))
        q = self._eval_samples(query, self.cfg.seed)
        g = self._eval_samples(gallery, self.cfg.seed + 1)
        if torch.is_grad_enabled():
            return match_probability(self.pair_logits(q.samples, g.samples)).mean((2, 3))
        return self._probabilities_inplace(q, g)

    def _probabilities_inplace(self, q: GaussianSamples, g: GaussianSamples) -> torch.Tensor:
        """The (N, M) probabilities with one (N·J × M·J') working buffer, modified in place.

        sigmoid(2·(−a·d + b)) is computed as sigmoid(−2a·d + 2b): scaling by 2 is exact in floating
        point, so the numbers equal the autograd path's.
        """
        buf = self.gemm_operands(q, "query") @ self.gemm_operands(g, "gallery").t()
        return self.gemm_epilogue(buf, len(q), len(g))

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor | None:
        """Augmented samples whose inner products are minus half the squared sample distances (N·J, D + 2).

        Query rows [z, ‖z‖², 1], gallery rows [z', −½, −½‖z'‖²]: their product is
        z·z' − ½‖z‖² − ½‖z'‖² = −½‖z − z'‖², exactly −½ times the sum over [z, ‖z‖², 1] and
        [−2z', 1, ‖z'‖²] (scaling by a power of two is exact), so −2 × it is that number bit for bit.
        None for unprepared embeddings (no samples yet).
        """
        if not isinstance(emb, GaussianSamples):
            return None
        z = emb.samples.reshape(-1, emb.samples.shape[-1])
        sq, one = emb.sq_norms.reshape(-1, 1).to(z.dtype), z.new_ones(z.shape[0], 1)
        return torch.cat([z, sq, one] if side == "query" else [z, -0.5 * one, -0.5 * sq], dim=1)

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """−½ squared distances (n·J, m·J') -> mean over the J × J' pairs of sigmoid(2·(−a·sqrt(d² + 1e-6) + b)).

        In place; d² + 1e-6 is taken as 1e-6 + (−2)·min(product, 0) (one rounding, as for the clamped
        d² plus 1e-6), and sigmoid(2·(−a·d + b)) as sigmoid(−2a·d + 2b) (scaling by 2 is exact).
        """
        j, j2 = products.shape[0] // n, products.shape[1] // m
        buf = products.clamp_(max=0)
        buf = torch.add(buf.new_tensor(DISTANCE_EPS), buf, alpha=-2.0, out=buf).sqrt_()
        buf.mul_(-2.0 * self.scale).add_(2.0 * self.shift).sigmoid_()
        return ordered_sum(ordered_sum(buf.view(n * j, m, j2), -1).view(n, j, m), 1).div_(j * j2)

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        jq = query.num_samples if isinstance(query, GaussianSamples) else self.num_samples
        jg = gallery.num_samples if isinstance(gallery, GaussianSamples) else self.num_samples
        # the (J × J') distance block plus the per-sample partial sums and output, in float32
        return 4 * (jq * jg + jq + 1)

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """Candidates by the distance of the means, −‖μ_q − μ_g‖² (augmented vectors), re-ranked with the
        sampled probability: approximate, as the variances and samples are left out of the candidate stage."""
        self.check(emb, emb)
        mean = emb.mean  # type: ignore[attr-defined]
        vecs = distance_vectors(mean, mean.float().pow(2).sum(-1), role)
        return SearchVectors(vecs.vectors, exact=False)


def build_match_prob(cfg: MatchProbConfig, **_: object) -> MatchProb:
    """Monte-Carlo match probability of Gaussian embeddings (PCME), J samples per item."""
    return MatchProb(cfg)


# ---------------------------------------------------------------------------------------------- csd


class CSDConfig(ComponentConfig):
    """Options of the closed-form sampled distance similarity (PCME++)."""

    init_scale: float = Field(5.0, gt=0, description="initial a in the logit −a·CSD + b (plain sigmoid, as PCME++)")
    init_shift: float = Field(5.0, description="initial b in the logit −a·CSD + b (plain sigmoid, as PCME++)")
    learnable: bool = Field(True, description="learn a and b with the model (else keep them fixed)")


class ClosedFormSampledDistance(Similarity):
    """Logit −a·CSD + b with CSD = ‖μ_q − μ_g‖² + Σσ²_q + Σσ²_g (PCME++); higher is more similar."""

    accepts = (GaussianEmbedding,)
    gemm_layout_free = True  # the epilogue is one multiply and one add per score

    def __init__(self, cfg: CSDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.logit = MatchLogit(cfg.init_scale, cfg.init_shift, cfg.learnable)

    @property
    def scale(self) -> torch.Tensor:
        return self.logit.scale

    @property
    def shift(self) -> torch.Tensor:
        return self.logit.shift

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        if torch.is_grad_enabled():
            return self.logit(closed_form_sampled_distance(query, gallery))  # type: ignore[arg-type]
        # inference: the engine's GEMM form (one matmul over augmented vectors, one fused epilogue)
        buf = self.gemm_operands(query, "query") @ self.gemm_operands(gallery, "gallery").t()
        return self.gemm_epilogue(buf, len(query), len(gallery))

    def gemm_operands(self, emb: Embedding, side: str) -> torch.Tensor:
        """Augmented vectors (N, D + 2) whose inner products are −CSD / 2.

        With β = ‖μ‖² + Σσ²: query rows [μ, β/2, 1], gallery rows [μ', −1, −β'/2], so
        q·g = μ·μ' − β/2 − β'/2 = −(‖μ − μ'‖² + Σσ² + Σσ'²) / 2 = −CSD / 2 (halving is exact in
        floating point, so this is the same number as the sum over [μ, β, 1] and [2μ', −1, −β'], halved).
        """
        self.check(emb, emb)
        mu = emb.mean  # type: ignore[attr-defined]
        half_beta = (row_sums(mu, "square") + row_sums(emb.logvar, "exp")).mul_(0.5)[:, None]  # type: ignore[attr-defined]
        one = mu.new_ones(mu.shape[0], 1)
        return torch.cat([mu, half_beta, one] if side == "query" else [mu, -one, -half_beta], dim=1)

    def gemm_epilogue(self, products: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """The logit −a·CSD + b = 2a·(q·g) + b, in place."""
        return products.mul_(2.0 * self.scale).add_(self.shift)

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        return 8  # the float32 block, plus its copy into the output matrix

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """Augmented vectors: query [2 μ_q, 1], gallery [μ_g, −(‖μ_g‖² + Σσ²_g)].  Their inner product
        is −CSD + (‖μ_q‖² + Σσ²_q), and −a·CSD + b with a > 0 increases with it: exact."""
        self.check(emb, emb)
        mean, var = emb.mean, emb.logvar.exp()  # type: ignore[attr-defined]
        return distance_vectors(mean, mean.float().pow(2).sum(-1) + var.float().sum(-1), role)


def build_csd(cfg: CSDConfig, **_: object) -> ClosedFormSampledDistance:
    """PCME++ closed-form sampled distance as a learnable logit (one matmul per block)."""
    return ClosedFormSampledDistance(cfg)


# ---------------------------------------------------------------------------------------------- mean_cosine


class MeanCosineConfig(ComponentConfig):
    """The cosine of the means has no options."""


class MeanCosine(Similarity):
    """cos(μ_q, μ_g): ignores the variances (the cheapest way to rank Gaussian embeddings)."""

    accepts = (GaussianEmbedding, PointEmbedding)

    @staticmethod
    def _unit_means(emb: Embedding) -> torch.Tensor:
        x = emb.mean if isinstance(emb, GaussianEmbedding) else emb.vectors  # type: ignore[attr-defined]
        return F.normalize(x, dim=-1)

    def forward(self, query: Embedding, gallery: Embedding) -> torch.Tensor:
        self.check(query, gallery)
        return self._unit_means(query) @ self._unit_means(gallery).t()

    def prepare(self, emb: Embedding, generator: torch.Generator | None = None) -> Embedding:
        self.check(emb, emb)
        return PointEmbedding(self._unit_means(emb))

    def search_vectors(self, emb: Embedding, role: str) -> SearchVectors:
        """The unit means, one row per item: their inner product is the score (exact)."""
        self.check(emb, emb)
        return SearchVectors(self._unit_means(emb).float()[:, None, :], exact=True)

    def pair_bytes(self, query: Embedding, gallery: Embedding) -> int:
        return 4


def build_mean_cosine(cfg: MeanCosineConfig, **_: object) -> MeanCosine:
    """Cosine similarity of the means of Gaussian embeddings."""
    return MeanCosine()
