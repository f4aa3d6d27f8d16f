"""mil_max as one (N·K) × (M·K') GEMM + a max over a reshape, against a loop from the formula."""
from __future__ import annotations

import math

import torch

from xmodalzoo.plugin_api import SetEmbedding
from xmodalzoo.similarity.scorer import prepare_scorer
from xmodalzoo_pvse.similarity import MILMax


def test_mil_max_gemm_form_equals_the_formula():
    gen = torch.Generator().manual_seed(0)
    q = SetEmbedding(torch.randn(5, 3, 4, generator=gen, dtype=torch.float64))
    g = SetEmbedding(torch.randn(6, 2, 4, generator=gen, dtype=torch.float64))  # set sizes may differ
    scorer = prepare_scorer(MILMax(), q, g, torch.device("cpu"), 0)
    assert scorer.uses_gemm
    got = scorer.block(slice(0, 5), slice(0, 6))

    def cos(x, y):
        return float(x @ y) / math.sqrt(float(x @ x) * float(y @ y))

    for i in range(5):
        for j in range(6):
            want = max(cos(q.vectors[i, k], g.vectors[j, l]) for k in range(3) for l in range(2))
            assert math.isclose(float(got[i, j]), want, abs_tol=1e-6)
