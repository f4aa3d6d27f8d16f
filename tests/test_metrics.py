"""Retrieval metrics and protocol folds against brute-force references (loops over queries).

Ranks are ranking functions of the scores and carry no gradient, so only values are compared.
Scores are rounded to one decimal so that ties are frequent: the convention under test is the
stable descending order, lower gallery index first (``np.argsort(-s, kind="stable")``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmodalzoo.eval import metrics as M
from xmodalzoo.eval.protocols import protocol_folds


# ---------------------------------------------------------------- brute-force references
def ref_order(row: np.ndarray) -> np.ndarray:
    return np.argsort(-row, kind="stable")


def ref_first_positive_rank(row: np.ndarray, pos: np.ndarray) -> int:
    for place, j in enumerate(ref_order(row)):
        if pos[j]:
            return place + 1
    return len(row) + 1


def ref_r_precision(row: np.ndarray, pos: np.ndarray) -> float:
    r = int(pos.sum())
    if r == 0:
        return math.nan
    top = ref_order(row)[:r]
    return sum(bool(pos[j]) for j in top) / r


def ref_map_at_r(row: np.ndarray, pos: np.ndarray) -> float:
    r = int(pos.sum())
    if r == 0:
        return math.nan
    hits, total = 0, 0.0
    for i, j in enumerate(ref_order(row)[:r], start=1):
        if pos[j]:
            hits += 1
            total += hits / i
    return total / r


def ref_hamming(a: np.ndarray, b: np.ndarray) -> int:
    return sum(int(x != 0) != int(y != 0) for x, y in zip(a, b))


def random_scores(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    # one decimal: about ten distinct values per row, so most rows have ties
    return np.round(rng.random((n, m)), 1).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---------------------------------------------------------------- ranks and recalls
@pytest.mark.parametrize("chunk_rows", [None, 3])
def test_first_positive_ranks_match_reference_with_ties(rng: np.random.Generator, chunk_rows: int | None) -> None:
    scores = random_scores(rng, 17, 23)
    pos = rng.random((17, 23)) < 0.15
    pos[0] = False  # a query without positives gets rank M + 1
    got = M.first_positive_ranks(torch.from_numpy(scores), torch.from_numpy(pos), chunk_rows=chunk_rows)
    want = [ref_first_positive_rank(scores[q], pos[q]) for q in range(17)]
    assert got.tolist() == want
    assert got[0] == 24


@pytest.mark.parametrize("chunk_rows", [None, 4])
def test_single_positive_ranks_match_reference_with_ties(rng: np.random.Generator, chunk_rows: int | None) -> None:
    scores = random_scores(rng, 19, 11)
    target = rng.integers(0, 11, size=19)
    got = M.single_positive_ranks(torch.from_numpy(scores), torch.from_numpy(target), chunk_rows=chunk_rows)
    pos = np.zeros_like(scores, dtype=bool)
    pos[np.arange(19), target] = True
    want = [ref_first_positive_rank(scores[q], pos[q]) for q in range(19)]
    assert got.tolist() == want


def test_single_positive_ranks_rejects_bad_targets() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.single_positive_ranks(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="one gallery index per query"):
        M.single_positive_ranks(torch.zeros(2, 3), torch.tensor([0]))


def test_ties_rank_lower_gallery_index_first() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.9]])
    assert M.single_positive_ranks(scores, torch.tensor([0])).item() == 2
    assert M.single_positive_ranks(scores, torch.tensor([2])).item() == 4


@pytest.mark.parametrize("n", [9, 10])  # odd and even numbers of queries (median convention)
def test_recall_summary_matches_reference(rng: np.random.Generator, n: int) -> None:
    scores = random_scores(rng, n, 30)
    pos = rng.random((n, 30)) < 0.1
    pos[np.arange(n), rng.integers(0, 30, size=n)] = True
    ranks = [ref_first_positive_rank(scores[q], pos[q]) for q in range(n)]
    got = M.recall_summary(M.first_positive_ranks(torch.from_numpy(scores), torch.from_numpy(pos)), (1, 5, 10))
    for k in (1, 5, 10):
        assert got[f"r{k}"] == pytest.approx(100.0 * sum(r <= k for r in ranks) / n)
    ranks0 = sorted(r - 1 for r in ranks)  # VSE++: floor(median of 0-based ranks) + 1
    mid = (ranks0[(n - 1) // 2] + ranks0[n // 2]) / 2
    assert got["medr"] == math.floor(mid) + 1
    assert got["meanr"] == pytest.approx(sum(ranks) / n)


def test_median_rank_of_an_even_count_is_rounded_down() -> None:
    # 0-based ranks 0, 1, 2, 5 have median 1.5: VSE++ reports floor(1.5) + 1 = 2
    got = M.recall_summary(torch.tensor([1, 2, 3, 6]))
    assert got["medr"] == 2.0 and got["meanr"] == 3.0 and got["r1"] == 25.0 and got["r5"] == 75.0


def test_recall_summary_rejects_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        M.recall_summary(torch.empty(0, dtype=torch.long))


# ---------------------------------------------------------------- R-Precision, mAP@R
@pytest.mark.parametrize("chunk_rows", [None, 2])
def test_r_precision_and_map_at_r_match_reference(rng: np.random.Generator, chunk_rows: int | None) -> None:
    scores = random_scores(rng, 13, 21)
    pos = rng.random((13, 21)) < 0.3
    pos[3] = False  # no positives: NaN, skipped by the mean
    pos[4] = True  # every item is a positive: both are 1
    rp, ap = M.r_precision_map_at_r(torch.from_numpy(scores), torch.from_numpy(pos), chunk_rows=chunk_rows)
    want_rp = [ref_r_precision(scores[q], pos[q]) for q in range(13)]
    want_ap = [ref_map_at_r(scores[q], pos[q]) for q in range(13)]
    np.testing.assert_allclose(rp.numpy(), want_rp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ap.numpy(), want_ap, rtol=0, atol=1e-12)
    assert math.isnan(rp[3]) and rp[4] == 1.0 and ap[4] == 1.0
    valid = [v for v in want_rp if not math.isnan(v)]
    assert M.nan_mean_percent(rp) == pytest.approx(100 * sum(valid) / len(valid))


@pytest.mark.parametrize("k", [1, 3, 7, 40])  # small k: topk path; large k: full sort
def test_stable_topk_indices_match_stable_argsort(rng: np.random.Generator, k: int) -> None:
    scores = random_scores(rng, 9, 50)
    scores[0] = 0.5  # a row of equal scores
    got = M.stable_topk_indices(torch.from_numpy(scores), k)
    want = [ref_order(scores[q])[:k].tolist() for q in range(9)]
    assert got.tolist() == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_topk_indices_with_nan_and_signed_zero_ties(dtype: torch.dtype) -> None:
    """A row whose k-th score is NaN (NaN ranks first, as in torch.sort), and -0.0 tying with 0.0."""
    s = torch.rand(4, 12, dtype=dtype).round(decimals=1)
    s[0, :3] = math.nan
    s[1, [2, 5, 9]] = math.nan
    s[2] = 0.0
    s[2, [1, 4]] = -0.0
    s[2, [3, 8]] = 2.0
    want = torch.argsort(s, dim=1, descending=True, stable=True)
    for k in (1, 2, 3, 4, 6, 12):
        assert M.stable_topk_indices(s, k).tolist() == want[:, :k].tolist(), k
    assert M.stable_topk_indices(s, 2)[0].tolist() == [0, 1]
    assert M.stable_topk_indices(s, 4)[2].tolist() == [3, 8, 0, 1]


def test_r_precision_with_few_positives_in_a_wide_gallery(rng: np.random.Generator) -> None:
    scores = random_scores(rng, 8, 80)
    pos = np.zeros((8, 80), dtype=bool)
    for q in range(8):  # 1 to 3 positives: only the top few places are ranked
        pos[q, rng.choice(80, size=1 + q % 3, replace=False)] = True
    rp, ap = M.r_precision_map_at_r(torch.from_numpy(scores), torch.from_numpy(pos))
    np.testing.assert_allclose(rp.numpy(), [ref_r_precision(scores[q], pos[q]) for q in range(8)], atol=1e-12)
    np.testing.assert_allclose(ap.numpy(), [ref_map_at_r(scores[q], pos[q]) for q in range(8)], atol=1e-12)


def test_r_precision_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="positives has shape"):
        M.r_precision_map_at_r(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool))


def test_nan_mean_percent_of_all_nan_is_nan() -> None:
    assert math.isnan(M.nan_mean_percent(torch.tensor([math.nan, math.nan])))


# ---------------------------------------------------------------- PMRP
def test_hamming_distances_match_reference(rng: np.random.Generator) -> None:
    a = (rng.random((5, 7)) < 0.4).astype(np.float32)
    b = (rng.random((6, 7)) < 0.4).astype(np.float32) * 3  # any non-zero entry counts as a 1
    got = M.hamming_distances(torch.from_numpy(a), torch.from_numpy(b))
    want = [[ref_hamming(a[i], b[j]) for j in range(6)] for i in range(5)]
    assert got.tolist() == want


@pytest.mark.parametrize("chunk_rows", [None, 3])
def test_pmrp_matches_reference(rng: np.random.Generator, chunk_rows: int | None) -> None:
    n, m, c = 11, 16, 5
    scores = random_scores(rng, n, m)
    q_lab = (rng.random((n, c)) < 0.3).astype(np.int64)
    g_lab = (rng.random((m, c)) < 0.3).astype(np.int64)
    q_lab[0] = 1
    g_lab[:, 0] = 0  # query 0 is ≥ 1 bit from everything: no positive at ζ = 0
    got = M.pmrp(torch.from_numpy(scores), torch.from_numpy(q_lab), torch.from_numpy(g_lab), (0, 1, 2), chunk_rows)
    for z in (0, 1, 2):
        want = []
        for q in range(n):
            pos = np.array([ref_hamming(q_lab[q], g_lab[j]) <= z for j in range(m)])
            want.append(ref_r_precision(scores[q], pos))
        np.testing.assert_allclose(got[z].numpy(), want, rtol=0, atol=1e-12)
    assert math.isnan(got[0][0])


def test_pmrp_rejects_label_rows_that_do_not_match() -> None:
    with pytest.raises(ValueError, match="labels do not match"):
        M.pmrp(torch.zeros(2, 3), torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="ζ must be ≥ 0"):
        M.pmrp(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(3, 4), zetas=(-1,))


# ---------------------------------------------------------------- protocol folds
def test_coco1k_folds_take_consecutive_images_and_their_captions_in_file_order(rng: np.random.Generator) -> None:
    num_images, fold = 11, 3  # 3 whole folds; images 9 and 10 are left out
    c2i = rng.permutation(np.repeat(np.arange(num_images), 2))  # captions not grouped by image
    folds = protocol_folds("coco1k", c2i, num_images, fold_size=fold)
    assert len(folds) == 3
    for f, got in enumerate(folds):
        assert got.image_index.tolist() == list(range(f * fold, (f + 1) * fold))
        want_caps = [t for t in range(len(c2i)) if f * fold <= c2i[t] < (f + 1) * fold]
        assert got.caption_index.tolist() == want_caps


def test_coco5k_and_full_folds() -> None:
    c2i = np.repeat(np.arange(8), 5)
    (five,) = protocol_folds("coco5k", c2i, 8, coco5k_images=6)
    assert five.image_index.tolist() == list(range(6)) and five.caption_index.tolist() == list(range(30))
    (full,) = protocol_folds("full", c2i, 8)
    assert full.num_images == 8 and full.num_captions == 40


def test_protocols_error_clearly_on_small_splits_and_bad_input() -> None:
    c2i = np.repeat(np.arange(999), 5)
    with pytest.raises(ValueError, match="coco1k needs at least 1000 images.*has 999"):
        protocol_folds("coco1k", c2i, 999)
    with pytest.raises(ValueError, match="coco5k needs at least 5000 images"):
        protocol_folds("coco5k", c2i, 999)
    with pytest.raises(ValueError, match="unknown evaluation protocol 'coco2k'"):
        protocol_folds("coco2k", c2i, 999)
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\)"):
        protocol_folds("full", np.array([0, 10]), 10)
