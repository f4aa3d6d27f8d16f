"""Per-direction mean recall (VSE∞'s ``ar`` for i2t, ``ari`` for t2i) in the results, the results table
and benchmarks/results_table.py, against ranks counted by hand."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from rich.console import Console

from xmodalzoo.embeddings import PointEmbedding
from xmodalzoo.eval import evaluate_embeddings, results_table
from xmodalzoo.similarity import Cosine

ROOT = Path(__file__).resolve().parents[1]


def recall(ranks: list[int], k: int) -> float:
    return 100.0 * sum(r <= k for r in ranks) / len(ranks)


def brute_force_ranks(scores: torch.Tensor, caption_image: list[int]) -> tuple[list[int], list[int]]:
    """1-based ranks, ties to the lower index: an image's best own caption; a caption's own image."""
    n_img, n_cap = scores.shape
    i2t = []
    for i in range(n_img):
        order = sorted(range(n_cap), key=lambda c: (-float(scores[i, c]), c))
        i2t.append(1 + min(order.index(c) for c in range(n_cap) if caption_image[c] == i))
    t2i = []
    for c in range(n_cap):
        order = sorted(range(n_img), key=lambda i: (-float(scores[i, c]), i))
        t2i.append(1 + order.index(caption_image[c]))
    return i2t, t2i


def test_ar_and_ari_are_the_mean_recalls_of_each_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    n_img, per = 30, 2
    caption_image = [c // per for c in range(n_img * per)]
    img = torch.nn.functional.normalize(torch.randn(n_img, 8, generator=gen), dim=-1)
    # captions near their image, with noise: ranks spread over 1..30
    cap = torch.nn.functional.normalize(img[caption_image] + 0.9 * torch.randn(n_img * per, 8, generator=gen), dim=-1)
    res = evaluate_embeddings(Cosine(), PointEmbedding(img), PointEmbedding(cap), caption_image)["full"]
    i2t, t2i = brute_force_ranks(img @ cap.t(), caption_image)
    ar = sum(recall(i2t, k) for k in (1, 5, 10)) / 3
    ari = sum(recall(t2i, k) for k in (1, 5, 10)) / 3
    assert abs(res["ar"] - ar) < 1e-9 and abs(res["ari"] - ari) < 1e-9
    assert 0 < ari < ar < 100 or 0 < ar < ari < 100  # a case where the two differ and neither saturates
    assert abs(res["ar"] + res["ari"] - res["rsum"] / 3) < 1e-9


def test_the_table_shows_mean_recall_per_direction() -> None:
    console = Console(width=80, record=True)
    console.print(results_table({"full": {"i2t_r1": 10.0, "t2i_r1": 5.0, "ar": 42.25, "ari": 17.5, "rsum": 179.3}}))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "R@1" in line)
    assert "mR" in header
    i2t = next(line for line in lines if "i→t" in line)
    t2i = next(line for line in lines if "t→i" in line)
    assert "42.2" in i2t and "17.5" in t2i and "17.5" not in i2t


def test_results_table_script_prints_and_derives_them(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "benchmarks" / "results_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    old = {f"{d}_r{k}": v for d, vals in (("i2t", (3.0, 6.0, 12.0)), ("t2i", (1.0, 2.0, 6.0)))
           for k, v in zip((1, 5, 10), vals)}
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "eval_results.json").write_text(json.dumps({"full": {**old, "rsum": 30.0}}))
    line = script.row(run, "full")
    cells = [c.strip() for c in line.strip("|").split("|")]
    headers = ["run"] + [name for name, _ in script.COLUMNS]
    assert cells[headers.index("i2t mR")] == "7.0" and cells[headers.index("t2i mR")] == "3.0"
