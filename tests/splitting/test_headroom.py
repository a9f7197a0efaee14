"""bench/split_headroom.py: the Lagrangian bound is a true lower bound, and the bench runs end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.tools import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import split_headroom  # bench/ holds scripts, not a package


def test_dual_bound_matches_the_mixed_optimum() -> None:
    # Two actions per request: 10 ms at 50% or 20 ms at 100%. Mean accuracy >= 75% needs half of the
    # requests on the slow action (or each at 50/50): the optimum is 15 ms, and no choice does better.
    grid = split_headroom.Grid(latency_ms=np.array([[10.0, 20.0]] * 4), accuracy=np.array([[0.5, 1.0]] * 4),
                               reward=np.zeros((4, 2)))
    assert split_headroom.dual_bound(grid, 0.75) == pytest.approx(15.0, rel=1e-3)
    assert split_headroom.dual_bound(grid, 0.5) == pytest.approx(10.0)  # the fast action alone is feasible


def test_dual_bound_never_exceeds_a_feasible_choice() -> None:
    rng = np.random.default_rng(0)
    latency, accuracy = rng.uniform(5, 100, (200, 6)), rng.uniform(0.2, 1.0, (200, 6))
    grid = split_headroom.Grid(latency, accuracy, reward=-latency)
    for _ in range(20):
        pick = rng.integers(0, 6, 200)
        r = np.arange(200)
        floor = float(accuracy[r, pick].mean())
        assert split_headroom.dual_bound(grid, floor) <= float(latency[r, pick].mean()) + 1e-9


def _traces(folder: Path) -> Path:
    folder.mkdir()
    (folder / "steady").write_text("".join(f"{t}\t4.0\n" for t in range(60)))
    (folder / "drops").write_text("".join(f"{t}\t{4.0 if (t // 10) % 2 else 0.05}\n" for t in range(60)))
    return folder


def test_bench_reports_the_oracle_within_the_bound(profiled_bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    traces = _traces(tmp_path / "traces")
    out = tmp_path / "headroom.json"
    code = split_headroom.main(["--bundle", str(profiled_bundle), "--traces", str(traces), "--train-traces",
                                str(traces), "--model-scales", "1", "4", "--rtts-ms", "10", "--stride", "2",
                                "--out", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model_scale"], r["rtt_ms"]) for r in rows] == [(1.0, 10.0), (4.0, 10.0)]
    for row in rows:
        assert row["requests"] == 2 * 120
        # The oracle is itself a feasible planner (its own accuracy is above the floor), so the bound
        # cannot be above its latency, and the headroom is measured against Neurosurgeon's latency.
        assert row["bound_ms"] <= row["oracle_ms"] + 1e-9
        assert row["headroom"] == pytest.approx(1 - row["bound_ms"] / row["neurosurgeon_ms"])
    # Heavier segments make every action slower.
    assert rows[1]["oracle_ms"] > rows[0]["oracle_ms"]
    printed = capsys.readouterr().out
    assert "| model scale | RTT ms |" in printed and "25% reachable?" in printed
