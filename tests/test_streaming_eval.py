"""The streaming evaluator: identical metrics to the score-matrix evaluator, and to brute-force loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.eval import EvalConfig, RetrievalTargets, evaluate_embeddings, fold_metrics
from xmodalzoo.eval.protocols import protocol_folds
from xmodalzoo.eval import streaming
from xmodalzoo.eval.streaming import plan_stream, stream_fold_metrics
from xmodalzoo.similarity import Cosine, Dot, similarity_matrix
from xmodalzoo.similarity.scorer import BlockScorer

ZETAS = (0, 1, 2)


def tied_data(n_img: int, caps_per_img: int, dim: int = 3, seed: int = 0):
    """Integer vectors with few distinct values: many exactly equal scores (ties) in any kernel."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(-1, 2, (n_img, dim), generator=gen).float()
    img[0] = 0  # a zero vector: cosine 0 (normalize keeps it 0) for every caption
    m = n_img * caps_per_img
    cap = torch.randint(-1, 2, (m, dim), generator=gen).float()
    c2i = torch.randperm(m, generator=gen) % n_img  # captions not grouped by image
    extra = torch.rand(m, n_img, generator=gen) < 0.15  # exhaustive positives beyond the own image
    positives = extra | (torch.arange(n_img)[None, :] == c2i[:, None])
    img_lab = (torch.rand(n_img, 5, generator=gen) < 0.3).long()
    cap_lab = (torch.rand(m, 5, generator=gen) < 0.3).long()
    return PointEmbedding(img), PointEmbedding(cap), c2i, positives, img_lab, cap_lab


def reference(sim, img, cap, c2i, positives, img_lab, cap_lab, seed=0):
    """The score-matrix path: similarity_matrix, then fold_metrics."""
    scores = similarity_matrix(sim, img, cap, device="cpu", seed=seed)
    targets = RetrievalTargets(c2i.numpy(), len(img), positives, img_lab, cap_lab)
    return fold_metrics(scores, targets, ZETAS), scores


@pytest.mark.parametrize("sim", [Cosine(), Dot()], ids=["cosine-gemm-hook", "dot-forward-fallback"])
@pytest.mark.parametrize("max_bytes,hot", [(1 << 30, 1 << 30), (1 << 30, 20_000), (300_000, 1 << 30)])
def test_identical_to_score_matrix_evaluator(sim, max_bytes, hot):
    img, cap, c2i, pos, il, cl = tied_data(41, 3)
    (want, want_ranks), scores = reference(sim, img, cap, c2i, pos, il, cl)
    assert (scores[:, :, None] == scores[:, None, :]).sum() > 10 * scores.numel()  # many ties
    got, ranks = stream_fold_metrics(sim, img, cap, c2i, positives=pos, image_labels=il, caption_labels=cl,
                                     zetas=ZETAS, max_bytes=max_bytes, hot_bytes=hot)
    assert got == want  # every metric, bit for bit
    assert torch.equal(ranks["i2t"], want_ranks["i2t"]) and torch.equal(ranks["t2i"], want_ranks["t2i"])


def test_identical_on_continuous_random_data_with_many_blocks():
    gen = torch.Generator().manual_seed(3)
    img = PointEmbedding(torch.randn(150, 24, generator=gen))
    cap = PointEmbedding(torch.randn(700, 24, generator=gen))
    c2i = torch.arange(700) // 5 % 150
    pos = (torch.rand(700, 150, generator=gen) < 0.02) | (torch.arange(150)[None] == c2i[:, None])
    (want, _), _ = reference(Cosine(), img, cap, c2i, pos, None, None)
    got, _ = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, hot_bytes=40_000)
    assert got == want and "map_at_r_t2i" in got


def test_recounts_when_the_first_scoring_of_positives_differs(monkeypatch):
    """If a kernel scores the positive pairs differently on their own, the second pass fixes the counts."""
    img, cap, c2i, pos, il, cl = tied_data(30, 4, seed=1)
    (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, pos, il, cl)
    real = BlockScorer.pairs

    def off_by_a_bit(self, qi, gi, **kw):
        return torch.nextafter(real(self, qi, gi, **kw), torch.tensor(math.inf))

    monkeypatch.setattr(BlockScorer, "pairs", off_by_a_bit)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, image_labels=il, caption_labels=cl,
                                     zetas=ZETAS, hot_bytes=30_000)
    assert got == want and torch.equal(ranks["t2i"], want_ranks["t2i"])


def _coco_style(seed: int, n_img: int = 40, per_img: int = 5, noise: float = 3.0):
    """Captions grouped by image, each a noisy copy of its image, each caption's only positive its own
    image: most images find a caption in their top 5, many only further down (some after a
    positive of theirs led an early block)."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(n_img, 8, generator=gen)
    c2i = torch.arange(n_img * per_img) // per_img
    cap = img[c2i] + noise * torch.randn(len(c2i), 8, generator=gen)
    return PointEmbedding(img), PointEmbedding(cap), c2i, torch.arange(n_img)[None, :] == c2i[:, None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_queries_past_their_r_leave_the_top_k_and_score_no_hit(seed, monkeypatch):
    """COCO-style positives (each a caption with its own image): an image's top k is no longer kept
    once more than R captions rank before its best one (it has no hit in its top R), so its running
    top k may hold positives of early blocks that later ones pushed out; its R-Precision and
    mAP@R must be 0 all the same, every metric equal to the score matrix's and to brute force."""
    img, cap, c2i, own = _coco_style(seed)
    (want, want_ranks), scores = reference(Cosine(), img, cap, c2i, own, None, None)
    assert 0.2 < float((want_ranks["i2t"] > 5).float().mean()) < 0.8  # both kinds of query
    merged = []
    real = streaming.RunningTopK.merge
    monkeypatch.setattr(streaming.RunningTopK, "merge", lambda self, q, b, g0, wanted=None:
                        merged.append(int(wanted.sum()) if wanted is not None else -1) or real(self, q, b, g0, wanted))
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=own, max_bytes=20_000)
    assert len(merged) > 10 and min(merged) >= 0 and sum(merged) < 40 * len(merged) // 2  # rows left out
    assert got == want and torch.equal(ranks["i2t"], want_ranks["i2t"])
    brute = brute_metrics(scores, c2i.tolist(), own.tolist(), torch.zeros(40, 1), torch.zeros(len(c2i), 1))
    for key in ("r_precision_i2t", "map_at_r_i2t"):
        assert got[key] == pytest.approx(brute[key], abs=1e-9), key


def test_extra_positives_keep_every_top_k(monkeypatch):
    """A positive beyond the caption–image pairs (as ECCV Caption or CxC add) may outrank an image's
    own captions: no query leaves the top k then."""
    img, cap, c2i, own = _coco_style(0)
    pos = own.clone()
    pos[3, 7] = True  # caption 3 (of image 0) a positive of image 7 as well
    wanted = []
    real = streaming.RunningTopK.merge
    monkeypatch.setattr(streaming.RunningTopK, "merge", lambda self, q, b, g0, w=None:
                        wanted.append(w) or real(self, q, b, g0, w))
    (want, _), _ = reference(Cosine(), img, cap, c2i, pos, None, None)
    got, _ = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, max_bytes=20_000)
    assert got == want and wanted and all(w is None for w in wanted)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_recount_keeps_the_pruned_top_k_again(seed, monkeypatch):
    """First estimates of the positive pairs an ulp low (a BLAS rounding by shape): every image counts
    its own best caption too, so one whose best caption ranks R-th is pruned from the top k though it
    has a hit; the second pass keeps the top k again from the exact counts, and the metrics equal
    the score matrix's."""
    img, cap, c2i, own = _coco_style(seed)
    (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, own, None, None)
    _perturbed_pairs(monkeypatch, lambda x: torch.nextafter(x, torch.tensor(-math.inf)))
    counted = _counting_passes(monkeypatch)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=own, max_bytes=20_000)
    assert len(counted) > 8 and got == want and torch.equal(ranks["i2t"], want_ranks["i2t"])


def _counting_passes(monkeypatch):
    """A list that gets one entry per block the evaluator counts (2 blocks' worth per pass)."""
    calls = []
    real = streaming._count_before
    monkeypatch.setattr(streaming, "_count_before", lambda *a: calls.append(1) or real(*a))
    return calls


def _perturbed_pairs(monkeypatch, shift):
    """The first scoring of the positive pairs moved by ``shift(scores)`` (a kernel rounding otherwise)."""
    real = BlockScorer.pairs
    monkeypatch.setattr(BlockScorer, "pairs", lambda self, qi, gi, **kw: shift(real(self, qi, gi, **kw)))


@pytest.mark.parametrize("steps", [1, 40])
def test_window_corrects_the_counts_in_one_pass(monkeypatch, steps):
    """A first estimate a few ulps off every positive (as a GPU kernel of another block shape
    gives): the scores kept near each threshold move the counts to the exact ones, with no second
    pass; the same metrics and ranks as the score matrix, bit for bit."""
    gen = torch.Generator().manual_seed(5)
    img = PointEmbedding(torch.randn(120, 16, generator=gen))
    cap = PointEmbedding(torch.randn(600, 16, generator=gen))
    c2i = torch.arange(600) // 5
    pos = (torch.rand(600, 120, generator=gen) < 0.03) | (torch.arange(120)[None] == c2i[:, None])
    (want, want_ranks), scores = reference(Cosine(), img, cap, c2i, pos, None, None)
    def ulps(x, k, toward):
        for _ in range(k):
            x = torch.nextafter(x, torch.tensor(toward))
        return x

    def wobble(x):  # half the scores up, half down, by `steps` ulps
        return torch.where(torch.arange(len(x)) % 2 == 0, ulps(x, steps, math.inf), ulps(x, steps, -math.inf))

    monkeypatch.setattr(streaming, "_use_window", lambda device: True)
    _perturbed_pairs(monkeypatch, wobble)
    counted = _counting_passes(monkeypatch)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, max_bytes=150_000)
    assert got == want
    assert torch.equal(ranks["i2t"], want_ranks["i2t"]) and torch.equal(ranks["t2i"], want_ranks["t2i"])
    blocks = len(counted) // 2
    assert blocks > 4  # several blocks...
    monkeypatch.setattr(streaming, "_use_window", lambda device: False)
    counted.clear()
    stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, max_bytes=150_000)
    assert len(counted) // 2 == 2 * blocks  # ...counted once with the window, twice without


def test_window_corrects_ties_at_the_threshold(monkeypatch):
    """Integer data, scores tied with thresholds at every index: corrections that hinge on the index
    rule (an equal score ranks before the threshold only at a lower index)."""
    img, cap, c2i, pos, il, cl = tied_data(30, 4, seed=2)
    (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, pos, il, cl)
    monkeypatch.setattr(streaming, "_use_window", lambda device: True)
    _perturbed_pairs(monkeypatch, lambda x: torch.nextafter(x, torch.tensor(-math.inf)))
    counted = _counting_passes(monkeypatch)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, image_labels=il, caption_labels=cl,
                                     zetas=ZETAS, hot_bytes=30_000)
    assert got == want and torch.equal(ranks["i2t"], want_ranks["i2t"]) and torch.equal(ranks["t2i"], want_ranks["t2i"])
    monkeypatch.setattr(streaming, "_use_window", lambda device: False)
    once = len(counted)
    counted.clear()
    stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, hot_bytes=30_000)
    assert len(counted) == 2 * once


@pytest.mark.parametrize("case", ["outside the window", "NaN estimate", "window full"])
def test_window_falls_back_to_a_second_pass(monkeypatch, case):
    """A threshold that moved out of its window, a NaN first estimate, or more kept scores than the
    cap: the window proves nothing, the evaluator counts again, and the results stay exact."""
    gen = torch.Generator().manual_seed(6)
    img = PointEmbedding(torch.randn(60, 8, generator=gen))
    cap = PointEmbedding(torch.randn(300, 8, generator=gen))
    c2i = torch.arange(300) // 5
    pos = torch.arange(60)[None] == c2i[:, None]
    (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, pos, None, None)
    monkeypatch.setattr(streaming, "_use_window", lambda device: True)
    shift = {"outside the window": lambda x: x + 0.01,
             "NaN estimate": lambda x: torch.where(torch.arange(len(x)) == 7, math.nan, x),
             "window full": lambda x: torch.nextafter(x, torch.tensor(math.inf))}[case]
    if case == "window full":
        monkeypatch.setattr(streaming, "WINDOW_PER_QUERY", 0)
        monkeypatch.setattr(streaming, "WINDOW_REL", 1.0)  # every score is near: the cap (2**16) ...
        cap = PointEmbedding(torch.randn(300, 8, generator=gen))
        img = PointEmbedding(torch.randn(300, 8, generator=gen))  # ... of 90,000 kept scores overflows
        c2i, pos = torch.arange(300), torch.eye(300, dtype=torch.bool)
        (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, pos, None, None)
    _perturbed_pairs(monkeypatch, shift)
    counted = _counting_passes(monkeypatch)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, hot_bytes=20_000)
    assert got == want
    assert torch.equal(ranks["i2t"], want_ranks["i2t"]) and torch.equal(ranks["t2i"], want_ranks["t2i"])
    once = len(counted)
    counted.clear()
    monkeypatch.setattr(BlockScorer, "pairs", BlockScorer.pairs)
    monkeypatch.undo()
    counted = _counting_passes(monkeypatch)
    stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, hot_bytes=20_000)
    assert once == 2 * len(counted)  # two passes with the window, one with an exact first estimate


@pytest.mark.parametrize("backend", ["torch", "onednn", "numpy"])
def test_the_first_scoring_of_positives_has_the_block_bits_on_every_cpu_backend(backend, monkeypatch, request):
    """Captions grouped by image, continuous scores, blocks of several shapes: the positive pairs'
    first scores equal their block scores, so no second counting pass is needed (a backend whose
    small products round differently would make every evaluation count twice)."""
    from xmodalzoo.similarity import gemm

    if backend == "onednn" and not gemm._onednn_usable():
        pytest.skip("this torch has no usable oneDNN linear")
    if backend == "numpy" and not gemm.numpy_keeps_bits():
        pytest.skip(f"numpy's BLAS ({gemm.numpy_blas()}) rounds by shape: the evaluator recounts")
    monkeypatch.setenv(gemm.ENV, backend)
    gemm.cpu_backend.cache_clear()
    request.addfinalizer(gemm.cpu_backend.cache_clear)
    same = []
    real = streaming._same_scores
    monkeypatch.setattr(streaming, "_same_scores", lambda a, b: same.append(real(a, b)) or same[-1])
    gen = torch.Generator().manual_seed(4)
    img = PointEmbedding(torch.randn(300, 96, generator=gen))
    cap = PointEmbedding(torch.randn(1500, 96, generator=gen))
    c2i = torch.arange(1500) // 5
    for hot in (1 << 30, 400_000):
        stream_fold_metrics(Cosine(), img, cap, c2i, hot_bytes=hot)
    assert same == [True, True]


@pytest.mark.parametrize("caps_per_img", [1, 3])
def test_one_positive_per_query_takes_precision_from_the_ranks(caps_per_img, monkeypatch):
    """COCO-style positives (each caption's own image only): t2i, and i2t with one caption per image,
    take R-Precision and mAP@R from the ranks; they must equal the top-k path and the brute force."""
    img, cap, c2i, _, _, _ = tied_data(23, caps_per_img, seed=5)
    own = torch.arange(23)[None, :] == c2i[:, None]
    (want, want_ranks), scores = reference(Cosine(), img, cap, c2i, own, None, None)
    merged = []
    real_merge = streaming.RunningTopK.merge
    monkeypatch.setattr(streaming.RunningTopK, "merge", lambda self, q, b, g0, *rest: merged.append(len(self.keys)) or
                        real_merge(self, q, b, g0, *rest))
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, positives=own, hot_bytes=6_000)
    # one caption per image: no top k at all; three: only i2t (23 images, 69 captions) keeps one
    assert set(merged) == (set() if caps_per_img == 1 else {23})
    assert got == want and torch.equal(ranks["t2i"], want_ranks["t2i"])
    brute = brute_metrics(scores, c2i.tolist(), own.tolist(), torch.zeros(23, 1), torch.zeros(len(c2i), 1))
    for key in ("r_precision_i2t", "map_at_r_i2t", "r_precision_t2i", "map_at_r_t2i"):
        assert got[key] == pytest.approx(brute[key], abs=1e-9), key


def test_thresholds_at_special_floats_count_their_ties():
    """Thresholds at -inf, ±0, subnormals, +inf and NaN (one-dimensional dot products): the one-comparison
    count (score > the next float down) must not be used where it is wrong."""
    values = [0.0, -0.0, 1e-40, -1e-40, math.inf, -math.inf, 1.0, -1.0, 2.0, math.nan]
    img = PointEmbedding(torch.tensor(values * 3)[:, None])
    cap = PointEmbedding(torch.tensor([1.0, -1.0, 0.0, 1.0, 1e-40, 2.0] * 10)[:, None])
    c2i = torch.arange(60) % 30
    own = torch.arange(30)[None, :] == c2i[:, None]
    (want, want_ranks), scores = reference(Dot(), img, cap, c2i, own, None, None)
    assert torch.isnan(scores).any() and torch.isinf(scores).any()
    for hot in (1 << 30, 3_000):
        got, ranks = stream_fold_metrics(Dot(), img, cap, c2i, positives=own, hot_bytes=hot)
        assert torch.equal(ranks["i2t"], want_ranks["i2t"]) and torch.equal(ranks["t2i"], want_ranks["t2i"])
        assert got == want


@pytest.mark.parametrize("qdim", [0, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_count_equals_a_loop_over_items(qdim, seed):
    """The per-block count of items ranked before each threshold (score higher, or equal with a lower
    index) against a loop: few distinct scores (many ties on both sides of the threshold item),
    thresholds at special floats, threshold indices before, inside and past the block."""
    gen = torch.Generator().manual_seed(seed)
    special = torch.tensor([0.0, -0.0, 1e-40, -1e-40, math.inf, -math.inf, math.nan, 0.5, -0.5, 1.0])
    queries, gallery, g0 = 23, 17, 40
    shape = (queries, gallery) if qdim == 0 else (gallery, queries)
    blk = special[torch.randint(0, len(special), shape, generator=gen)]
    value = special[torch.randint(0, len(special), (queries,), generator=gen)]
    first = torch.randint(g0 - 5, g0 + gallery + 5, (queries,), generator=gen)
    inside = (first >= g0) & (first < g0 + gallery)
    rows = inside.nonzero()[:, 0]  # a query's own threshold item scores its threshold, as a rule
    own = (rows, first[rows] - g0) if qdim == 0 else (first[rows] - g0, rows)
    keep = torch.rand(len(rows), generator=gen) < 0.8
    blk[own[0][keep], own[1][keep]] = value[rows[keep]]
    thr = streaming._Thresholds(value, first)
    got = streaming._count_before(blk, thr, slice(0, queries), g0, qdim, torch.empty(shape))
    s = blk if qdim == 0 else blk.t()
    want = [sum(1 for j in range(gallery) if s[q, j] > value[q] or (s[q, j] == value[q] and g0 + j < first[q]))
            for q in range(queries)]
    assert got.tolist() == want


# ------------------------------------------------------------------------------------ brute force


def ranked(row: list[float]) -> list[int]:
    """Gallery indices by descending score, ties by lower index (NaN-free rows)."""
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


def brute_metrics(scores: torch.Tensor, c2i, positives, img_lab, cap_lab) -> dict[str, float]:
    """Every metric from its definition, with Python loops over queries and ranked lists."""
    s = scores.tolist()
    n, m = len(s), len(s[0])
    st = [[s[i][c] for i in range(n)] for c in range(m)]
    i2t_rank = [1 + min(ranked(s[i]).index(c) for c in range(m) if c2i[c] == i) for i in range(n)]
    t2i_rank = [1 + ranked(st[c]).index(int(c2i[c])) for c in range(m)]
    out: dict[str, float] = {}
    for d, r in (("i2t", i2t_rank), ("t2i", t2i_rank)):
        for k in (1, 5, 10):
            out[f"{d}_r{k}"] = 100.0 * sum(x <= k for x in r) / len(r)
        out[f"{d}_medr"] = float(math.floor(float(np.median(r))))
        out[f"{d}_meanr"] = sum(r) / len(r)

    def hamming(a, b):
        return sum((x != 0) != (y != 0) for x, y in zip(a, b))

    for d, rows, rel, ql, gl in (
        ("i2t", s, lambda q, g: bool(positives[g][q]), img_lab.tolist(), cap_lab.tolist()),
        ("t2i", st, lambda q, g: bool(positives[q][g]), cap_lab.tolist(), img_lab.tolist()),
    ):
        rp, ap, pm = [], [], {z: [] for z in ZETAS}
        for q, row in enumerate(rows):
            order = ranked(row)
            R = sum(rel(q, g) for g in range(len(row)))
            if R:
                top = [rel(q, g) for g in order[:R]]
                rp.append(sum(top) / R)
                ap.append(sum(sum(top[: i + 1]) / (i + 1) for i in range(R) if top[i]) / R)
            for z in ZETAS:
                near = [hamming(ql[q], gl[g]) <= z for g in range(len(row))]
                Rz = sum(near)
                if Rz:
                    pm[z].append(sum(near[g] for g in order[:Rz]) / Rz)
        out[f"r_precision_{d}"] = 100.0 * sum(rp) / len(rp)
        out[f"map_at_r_{d}"] = 100.0 * sum(ap) / len(ap)
        for z in ZETAS:
            out[f"pmrp_{d}_z{z}"] = 100.0 * sum(pm[z]) / len(pm[z]) if pm[z] else math.nan
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_every_metric_matches_brute_force_loops(seed):
    img, cap, c2i, pos, il, cl = tied_data(9, 3, seed=seed)
    scores = similarity_matrix(Cosine(), img, cap, device="cpu")
    got, _ = stream_fold_metrics(Cosine(), img, cap, c2i, positives=pos, image_labels=il, caption_labels=cl,
                                 zetas=ZETAS, hot_bytes=5_000)
    want = brute_metrics(scores, c2i.tolist(), pos.tolist(), il, cl)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    assert got["rsum"] == pytest.approx(sum(want[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))


# ------------------------------------------------------------------------------------ memory and wiring


def test_blocks_stay_within_the_budget_and_never_span_the_matrix(monkeypatch):
    sim = Cosine()
    seen, scoring_pairs = [], []
    epilogue, real_pairs = sim.gemm_epilogue, BlockScorer.pairs

    def recorded(products, n, m):
        if not scoring_pairs:  # the small blocks that score the positive pairs first are not counted
            seen.append((n, m))
        return epilogue(products, n, m)

    def pairs(self, *args, **kwargs):
        scoring_pairs.append(True)
        try:
            return real_pairs(self, *args, **kwargs)
        finally:
            scoring_pairs.pop()

    sim.gemm_epilogue = recorded
    monkeypatch.setattr(BlockScorer, "pairs", pairs)
    img, cap, c2i, pos, _, _ = tied_data(60, 5)
    budget = 120_000
    stream_fold_metrics(sim, img, cap, c2i, positives=pos, max_bytes=budget)
    plan = plan_stream(60, 300, 4, int(pos.t().sum(1).max()), int(pos.sum(1).max()), budget)
    blocks = seen
    assert blocks and set(blocks) == {(plan.rows, plan.cols)} and plan.rows * plan.cols < 60 * 300
    assert plan.block_bytes + plan.cols * int(pos.sum(1).max()) * 80 <= budget
    with pytest.raises(ValueError, match="max_bytes=1000 is smaller than"):
        plan_stream(60, 300, 4, 3, 3, 1000)


def test_evaluate_embeddings_equals_the_score_matrix_path_per_fold():
    img, cap, c2i, pos, il, cl = tied_data(40, 2, seed=4)
    targets = RetrievalTargets(c2i.numpy(), 40, pos, il, cl)
    cfg = EvalConfig(protocols=["full"], max_bytes=50_000)
    got = evaluate_embeddings(Cosine(), img, cap, targets.caption_to_image, cfg)["full"]
    fold = protocol_folds("full", targets.caption_to_image, 40)[0]
    sub = targets.subset(fold)
    scores = similarity_matrix(Cosine(), img, cap, device="cpu")
    want, _ = fold_metrics(scores, RetrievalTargets(sub.caption_to_image, 40), ZETAS)
    assert got == want


@pytest.mark.parametrize("rows", [1, 7, 255, 10_000])
def test_positive_counts_per_caption_and_image(rows):
    """Both ways of counting positives (the CPU's 255-row byte sums, and whole-row chunks whose
    int64 cast fits the budget, used on GPUs) against a loop over the entries."""
    gen = torch.Generator().manual_seed(8)
    pos = torch.rand(600, 37, generator=gen) < 0.4
    pos[:300, 5] = True  # a column with more than 255 positives: byte sums must not wrap
    want_cap = [sum(bool(pos[c, i]) for i in range(37)) for c in range(600)]
    want_img = [sum(bool(pos[c, i]) for c in range(600)) for i in range(37)]
    for per_caption, per_image in (streaming._positive_counts(pos), streaming._positive_counts_wide(pos, rows)):
        assert per_caption.tolist() == want_cap and per_image.tolist() == want_img


def test_window_keeps_images_without_captions(monkeypatch):
    """An image no caption belongs to has threshold -inf (no window around it); it does not move,
    so the window still corrects the other queries in one pass."""
    gen = torch.Generator().manual_seed(9)
    img = PointEmbedding(torch.randn(50, 8, generator=gen))
    cap = PointEmbedding(torch.randn(200, 8, generator=gen))
    c2i = torch.arange(200) // 5  # images 40..49 have no caption
    (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, None, None, None)
    monkeypatch.setattr(streaming, "_use_window", lambda device: True)
    _perturbed_pairs(monkeypatch, lambda x: torch.nextafter(x, torch.tensor(math.inf)))
    counted = _counting_passes(monkeypatch)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, max_bytes=40_000)
    assert got == want and torch.equal(ranks["t2i"], want_ranks["t2i"])
    once = len(counted)
    monkeypatch.setattr(streaming, "_use_window", lambda device: False)
    counted.clear()
    stream_fold_metrics(Cosine(), img, cap, c2i, max_bytes=40_000)
    assert len(counted) == 2 * once


def _bench(name, *args):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / name
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


def test_the_evaluator_benchmarks_run_on_the_cpu():
    """benchmarks/evaluator_speed.py prints a row per size; evaluator_profile.py the top operations;
    asking either for CUDA where torch has none is a one-line error."""
    speed = _bench("evaluator_speed.py", "--cases", "cosine", "--sizes", "64x320", "--dim", "16", "--repeats", "1",
                   "--loop-queries", "4", "--no-memory", "--threads", "1")
    assert speed.returncode == 0, speed.stderr
    row = [line for line in speed.stdout.splitlines() if line.startswith("cosine")]
    assert len(row) == 1 and row[0].split()[1] == "64x320" and float(row[0].split()[4]) > 0  # the ratio
    profile = _bench("evaluator_profile.py", "--size", "64x320", "--dim", "16", "--top", "3", "--threads", "1")
    assert profile.returncode == 0, profile.stderr
    assert "cosine 64x320 on cpu" in profile.stdout and "# of Calls" in profile.stdout
    if not torch.cuda.is_available():
        gpu = _bench("evaluator_speed.py", "--device", "cuda", "--cases", "cosine", "--sizes", "64x320")
        assert gpu.returncode != 0 and gpu.stderr.strip().splitlines()[-1].startswith("error: --device cuda")


def test_an_image_without_captions_ranks_past_the_gallery_even_with_nan_scores():
    """No positive: rank M + 1 (as fold_metrics gives), also when some of its scores are NaN
    (counting against the threshold -inf would give the number of non-NaN scores)."""
    img = PointEmbedding(torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.nan, 0.0], [1.0, 1.0]]))
    cap = PointEmbedding(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]]))
    c2i = torch.tensor([0, 1, 0])  # images 2 and 3 have no caption
    (want, want_ranks), _ = reference(Cosine(), img, cap, c2i, None, None, None)
    got, ranks = stream_fold_metrics(Cosine(), img, cap, c2i, zetas=())
    assert ranks["i2t"].tolist() == want_ranks["i2t"].tolist() == [1, 1, 4, 4]
    assert got == want


@pytest.mark.parametrize("hot,cols", [(64 << 20, 2500), (64 << 20, 4096), (1 << 30, 16384), (1 << 30, 65536)])
def test_block_plans_keep_the_column_cap_and_the_budget(hot, cols):
    """CPU (64 MiB, 2,500 columns) and GPU (1 GiB, 16,384 columns) block shapes: at most the column
    cap, within the budget, and whole columns first (rows only shrink once the columns are capped)."""
    for n, m, budget in [(5000, 25000, 1 << 30), (25000, 125000, 1 << 30), (5000, 25000, 50 << 20)]:
        plan = plan_stream(n, m, 4, 5, 1, budget, hot_bytes=hot, block_cols=cols)
        assert plan.cols <= max(cols, 16) and plan.cols <= m and plan.rows <= n
        assert plan.block_bytes + plan.cols * 1 * streaming.TOPK_SLOT_BYTES <= min(budget, hot)
        assert plan.cols >= min(m, cols) // 2  # evened, never below half the cap


@pytest.mark.parametrize("fresh", [4, 64, 196])
def test_fresh_products_stay_under_the_heap_threshold(fresh, monkeypatch, request):
    """A backend that returns a fresh product per block (oneDNN): blocks keep it within
    FRESH_PRODUCT_BYTES (larger ones are new mappings each time, whose pages fault in), unless the
    budget allows nothing else; the evaluator asks for this only of such a backend."""
    from xmodalzoo.similarity import gemm

    for n, m in [(1000, 5000), (5000, 25000)]:
        plan = plan_stream(n, m, fresh + 4, 5, 1, 1 << 30, fresh_pair_bytes=fresh)
        assert plan.rows * plan.cols * fresh <= gemm.FRESH_PRODUCT_BYTES
        free = plan_stream(n, m, fresh + 4, 5, 1, 1 << 30)
        assert (plan.rows, plan.cols) == (free.rows, free.cols) if fresh == 4 else plan.rows < free.rows
    tiny = plan_stream(40, 200, 196, 5, 1, 200_000, fresh_pair_bytes=10**9)  # nothing fits the cap
    assert tiny.rows >= 16 and tiny.cols >= 16
    seen = []
    real = streaming.plan_stream
    monkeypatch.setattr(streaming, "plan_stream", lambda *a: seen.append(a[-1]) or real(*a))
    img, cap, c2i, own = _coco_style(0)
    request.addfinalizer(gemm.cpu_backend.cache_clear)
    for backend, want in [("onednn", 4), ("torch", 0)]:
        if backend == "onednn" and not gemm._onednn_usable():
            continue
        monkeypatch.setenv(gemm.ENV, backend)
        gemm.cpu_backend.cache_clear()
        stream_fold_metrics(Cosine(), img, cap, c2i, positives=own)
        assert seen[-1] == want, backend
