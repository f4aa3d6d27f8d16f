"""DivE's benchmark and analysis scripts: the slot-object geometry by hand, and a tiny end-to-end run."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def _script(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_cell_to_grid_shares_by_hand() -> None:
    div = _script("dive_diversity")
    share = div.cell_to_grid(4)  # 4 x 4 cells of width 1/4 against 3 x 3 grid cells of width 1/3
    assert share.shape == (16, 9)
    torch.testing.assert_close(share.sum(1), torch.ones(16))
    # cell (0, 0) lies inside grid (0, 0); cell (0, 1) spans x in [1/4, 1/2]: 1/3 in column 0, 2/3 in column 1
    assert share[0, 0] == 1
    torch.testing.assert_close(share[1, :3], torch.tensor([1 / 3, 2 / 3, 0.0]))
    # cell (1, 1) spans [1/4, 1/2]²: (2/3)² of it lies in the centre grid cell
    torch.testing.assert_close(share[5, 4], torch.tensor(4 / 9))


def test_object_masses_and_stats_by_hand() -> None:
    div = _script("dive_diversity")
    attention = torch.zeros(1, 2, 16)
    attention[0, 0, 0] = 1.0  # slot 0: all on the top-left cell
    attention[0, 1, 15] = 1.0  # slot 1: all on the bottom-right cell
    objects = -np.ones((1, 4, 5), dtype=np.int8)
    objects[0, 0] = [0, 0, 0, 0, 0]  # an object in grid cell (0, 0)
    objects[0, 1] = [1, 1, 0, 2, 2]  # an object in grid cell (2, 2)
    mass = div.object_masses(attention, objects)
    torch.testing.assert_close(mass[0], torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    stats = div.object_stats(attention, objects)
    assert stats["distinct_top_objects"] == 1.0 and stats["object_overlap"] == 0.0
    assert stats["mass_on_objects"] == 1.0 and stats["distinct_top_objects_chance"] == 0.75


def test_smooth_chamfer_benchmark_runs_and_ranks_agree() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "dive_smooth_chamfer.py"), "--images", "40", "--d", "16",
         "--loop-queries", "4", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "ranks of the timed queries agree: yes" in out.stdout
    assert "40 images × 200 captions" in out.stdout
