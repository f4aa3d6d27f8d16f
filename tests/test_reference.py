"""Reference rows (chance, oracle) against brute force: every ranking of a tiny gallery enumerated,
the metrics computed with loops from their definitions and averaged; and against the evaluator's own
metric code on random (chance) and ground-truth-first (oracle) score matrices."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from xmodalzoo.eval.evaluate import RetrievalTargets, fold_metrics
from xmodalzoo.eval.reference import fold_reference, reference_results

# 3 images, 5 captions: captions 0, 1 are image 0's, 2 is image 1's, 3, 4 are image 2's
C2I = np.array([0, 0, 1, 2, 2])
POSITIVES = torch.tensor([  # (captions, images): own image always, some captions match more
    [1, 0, 1],
    [1, 1, 1],
    [0, 1, 0],
    [0, 1, 1],
    [0, 0, 1],
], dtype=torch.bool)
IMAGE_LABELS = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]])
CAPTION_LABELS = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 1]])
ZETAS = (0, 1, 2)


def targets() -> RetrievalTargets:
    return RetrievalTargets(C2I, 3, POSITIVES, IMAGE_LABELS, CAPTION_LABELS)


def rankings(gallery: int, positives: list[int], oracle: bool):
    """Every ranking (gallery indices, best first): all of them, or the oracle's (positives first)."""
    if not oracle:
        yield from itertools.permutations(range(gallery))
        return
    rest = [g for g in range(gallery) if g not in positives]
    for a in itertools.permutations(positives):
        for b in itertools.permutations(rest):
            yield a + b


def hamming(a, b) -> int:
    return sum((x != 0) != (y != 0) for x, y in zip(a.tolist(), b.tolist()))


def brute_force(oracle: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    pos = POSITIVES.numpy()
    for direction in ("i2t", "t2i"):
        if direction == "i2t":  # query image q, gallery captions
            queries, gallery = 3, 5
            own = [[c for c in range(5) if C2I[c] == q] for q in range(3)]
            positive = [[c for c in range(5) if pos[c, q]] for q in range(3)]
            q_lab, g_lab = IMAGE_LABELS, CAPTION_LABELS
        else:
            queries, gallery = 5, 3
            own = [[int(C2I[q])] for q in range(5)]
            positive = [[i for i in range(3) if pos[q, i]] for q in range(5)]
            q_lab, g_lab = CAPTION_LABELS, IMAGE_LABELS
        expected_hit = {k: [] for k in (1, 5, 10)}
        rank_dist, mean_rank, rp, ap = [], [], [], []
        pmrp = {z: [] for z in ZETAS}
        for q in range(queries):
            perms = list(rankings(gallery, positive[q], oracle))
            first = []
            rp_q, ap_q, pm_q = [], [], {z: [] for z in ZETAS}
            R = len(positive[q])
            for perm in perms:
                first.append(min(perm.index(c) for c in own[q]) + 1)
                rel = [g in positive[q] for g in perm]
                rp_q.append(sum(rel[:R]) / R)
                ap_q.append(sum(sum(rel[: i + 1]) / (i + 1) * rel[i] for i in range(R)) / R)
                for z in ZETAS:
                    match = [hamming(q_lab[q], g_lab[g]) <= z for g in perm]
                    rz = sum(match)
                    pm_q[z].append(sum(match[:rz]) / rz if rz else math.nan)
            for k in expected_hit:
                expected_hit[k].append(np.mean([f <= k for f in first]))
            rank_dist.append(np.bincount(first, minlength=gallery + 2) / len(first))
            mean_rank.append(np.mean(first))
            rp.append(np.mean(rp_q))
            ap.append(np.mean(ap_q))
            for z in ZETAS:
                pmrp[z].append(np.mean(pm_q[z]))
        for k, v in expected_hit.items():
            out[f"{direction}_r{k}"] = 100 * np.mean(v)
        cdf = np.cumsum(np.mean(rank_dist, axis=0))
        out[f"{direction}_medr"] = float(np.argmax(cdf >= 0.5 - 1e-12))
        out[f"{direction}_meanr"] = float(np.mean(mean_rank))
        out[f"r_precision_{direction}"] = 100 * np.mean(rp)
        out[f"map_at_r_{direction}"] = 100 * np.mean(ap)
        per_z = {z: 100 * np.nanmean(pmrp[z]) for z in ZETAS}
        out[f"pmrp_{direction}"] = float(np.mean(list(per_z.values())))
        out.update({f"pmrp_{direction}_z{z}": v for z, v in per_z.items()})
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    out["ar"] = np.mean([out[f"i2t_r{k}"] for k in (1, 5, 10)])
    out["ari"] = np.mean([out[f"t2i_r{k}"] for k in (1, 5, 10)])
    return out


@pytest.mark.parametrize("row", ["chance", "oracle"])
def test_reference_rows_equal_brute_force_over_every_ranking(row):
    got = fold_reference(targets(), ZETAS)[row]
    want = brute_force(oracle=row == "oracle")
    assert set(got) == set(want)
    assert got == pytest.approx(want, abs=1e-9)


def test_by_hand():
    ref = fold_reference(targets(), ZETAS)
    # chance: a caption's own image among 3 at random; an image's own captions (2, 1, 2) among 5
    assert ref["chance"]["t2i_r1"] == pytest.approx(100 / 3)
    assert ref["chance"]["i2t_r1"] == pytest.approx(100 * np.mean([2 / 5, 1 / 5, 2 / 5]))
    assert ref["chance"]["t2i_r5"] == ref["chance"]["i2t_r5"] == 100.0
    # oracle: the own image first among the caption's 2, 3, 1, 2, 1 true matches
    assert ref["oracle"]["t2i_r1"] == pytest.approx(100 * np.mean([1 / 2, 1 / 3, 1, 1 / 2, 1]))
    # image 0 has 2 own captions among its 2 true matches: always first; image 1: 1 of 3; image 2: 2 of 4
    assert ref["oracle"]["i2t_r1"] == pytest.approx(100 * np.mean([1, 1 / 3, 2 / 4]))
    assert ref["oracle"]["r_precision_i2t"] == ref["oracle"]["map_at_r_t2i"] == 100.0
    # chance R-Precision: R / M for each query
    assert ref["chance"]["r_precision_t2i"] == pytest.approx(100 * np.mean([2, 3, 1, 2, 1]) / 3)


def copies(draws: int) -> RetrievalTargets:
    """``draws`` disjoint copies of the tiny split in one: positives block-diagonal, and labels extended
    by a code of 3 bits per copy so no label match crosses copies (Hamming distance ≥ 6 > max ζ)."""
    c2i = np.concatenate([C2I + 3 * d for d in range(draws)])
    positives = torch.block_diag(*[POSITIVES.long()] * draws).bool()
    code = torch.block_diag(*[torch.ones(1, 3, dtype=torch.long)] * draws)  # (draws, 3 * draws)
    image_labels = torch.cat([IMAGE_LABELS.repeat(draws, 1), code.repeat_interleave(3, 0)], 1)
    caption_labels = torch.cat([CAPTION_LABELS.repeat(draws, 1), code.repeat_interleave(5, 0)], 1)
    return RetrievalTargets(c2i, 3 * draws, positives, image_labels, caption_labels)


@pytest.mark.slow
def test_the_evaluator_metric_code_averages_to_the_reference():
    """fold_metrics, the evaluator's own code, on random scores (chance) and on positives-first scores
    with random tie-breaks (oracle), averages to the exact expectations: 400 independent copies of the
    split are scored at once, each copy's items ranked below every other copy's for its own queries."""
    ref = fold_reference(targets(), ZETAS)
    draws = 400
    big = copies(draws)
    noise = torch.rand(3 * draws, 5 * draws, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    block = big.positives.t().clone().fill_(False)
    for d in range(draws):
        block[3 * d : 3 * d + 3, 5 * d : 5 * d + 5] = True
    for name, scores in (("chance", noise), ("oracle", big.positives.t().double() + 0.5 * noise)):
        values, _ = fold_metrics(scores.masked_fill(~block, -10.0), big, ZETAS)
        for key in ("i2t_r1", "t2i_r1", "i2t_r5", "i2t_meanr", "t2i_meanr", "r_precision_i2t", "r_precision_t2i",
                    "map_at_r_i2t", "map_at_r_t2i", "pmrp_i2t", "pmrp_t2i"):
            tol = 0.15 if "meanr" in key else 5.0  # about 4 standard errors of 400 copies
            assert values[key] == pytest.approx(ref[name][key], abs=tol), (name, key)


def test_folds_average_and_missing_ground_truth():
    t = targets()
    assert reference_results(t, ["full"])["oracle"]["full"] == fold_reference(t)["oracle"]
    assert reference_results(RetrievalTargets(C2I, 3), ["full"]) is None           # no positives
    broken = POSITIVES.clone()
    broken[2, 1] = False                                                             # own image not a match
    assert reference_results(RetrievalTargets(C2I, 3, broken), ["full"]) is None


def test_results_table_shows_reference_rows_and_counts():
    from rich.console import Console

    from xmodalzoo.eval.report import results_table

    ref = reference_results(targets(), ["full"])
    results = {"full": ref["chance"]["full"], "reference": ref, "meta": {"num_images": 3, "num_captions": 5}}
    console = Console(width=100, record=True)
    console.print(results_table(results))
    text = console.export_text()
    rows = [line.split() for line in text.splitlines()]
    oracle = next(r for r in rows if r and r[0] == "oracle")
    assert oracle[1] == "i→t" and float(oracle[2]) == pytest.approx(ref["oracle"]["full"]["i2t_r1"], abs=0.05)
    assert any(r and r[0] == "chance" for r in rows)
    assert "3 images, 5 captions" in text
    assert "reference" not in text  # not shown as a protocol
