"""DivE's smooth-Chamfer (and Chamfer) as one (N·K) × (M·K') GEMM + epilogue, against loops from the formula."""
from __future__ import annotations

import math

import pytest
import torch

from xmodalzoo.plugin_api import SetEmbedding
from xmodalzoo.similarity.scorer import prepare_scorer
from xmodalzoo_dive.similarity import Chamfer, EuclideanSmoothChamfer, SmoothChamfer


def cos(x, y):
    return float(x @ y) / math.sqrt(float(x @ x) * float(y @ y))


def smooth_chamfer(x, y, alpha, logit):
    """½ [(1/(αK)) Σ_x log Σ_y exp(ℓ) + (1/(αK')) Σ_y log Σ_x exp(ℓ)]."""
    k, kg = len(x), len(y)
    ell = [[logit(cos(a, b)) for b in y] for a in x]
    rows = sum(math.log(sum(math.exp(v) for v in ell[i])) for i in range(k))
    cols = sum(math.log(sum(math.exp(ell[i][j]) for i in range(k))) for j in range(kg))
    return (rows / (alpha * k) + cols / (alpha * kg)) / 2


@pytest.mark.parametrize("kind", ["cosine", "euclidean", "chamfer"])
def test_set_gemm_forms_equal_the_formulas(kind):
    gen = torch.Generator().manual_seed(1)
    q = SetEmbedding(torch.randn(4, 3, 5, generator=gen, dtype=torch.float64))
    g = SetEmbedding(torch.randn(6, 2, 5, generator=gen, dtype=torch.float64))
    sim = {"cosine": SmoothChamfer(16.0), "euclidean": EuclideanSmoothChamfer(4.0), "chamfer": Chamfer()}[kind]
    scorer = prepare_scorer(sim, q, g, torch.device("cpu"), 0)
    assert scorer.uses_gemm
    got = scorer.block(slice(0, 4), slice(0, 6))
    with torch.no_grad():
        assert torch.equal(got, sim(q, g).float())  # a direct call at inference takes the same epilogue
    for i in range(4):
        for j in range(6):
            x, y = q.vectors[i], g.vectors[j]
            if kind == "cosine":
                want = smooth_chamfer(x, y, 16.0, lambda c: 16.0 * c)
            elif kind == "euclidean":
                want = smooth_chamfer(x, y, 4.0, lambda c: -4.0 * math.sqrt(max(2 - 2 * c, 0.0)))
            else:
                c = [[cos(a, b) for b in y] for a in x]
                want = (sum(max(r) for r in c) / 3 + sum(max(c[i][j] for i in range(3)) for j in range(2)) / 2) / 2
            assert math.isclose(float(got[i, j]), want, abs_tol=1e-5), (i, j)
