"""bench/offload_cpu.py serves a bundle and prints edge-only against cooperation: runtime and edge CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from offload_cpu import cpu_seconds

from tests.bench.conftest import BENCH_DIR
from tests.deploy.tools import REPO_ROOT


def test_cpu_seconds_counts_this_process_work() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before


@pytest.mark.slow
def test_it_prints_one_row_per_depth_with_both_ratios(tiny_bundle: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pins the edge and the cloud to two cores")
    done = subprocess.run([sys.executable, str(BENCH_DIR / "offload_cpu.py"), "--bundle", str(tiny_bundle),
                           "--limit", "256", "--batch-size", "32", "--concurrency", "2", "4", "--repeats", "1",
                           "--max-merged", "64", "32"],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| 64 |", "| 32 |"))]
    # One served pair per merge cap, one row per depth.
    assert [tuple(c.strip() for c in r.strip("|").split("|")[:2]) for r in rows] == [
        ("64", "2"), ("64", "4"), ("32", "2"), ("32", "4")]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[4]) > 0 and float(cells[7]) > 0  # runtime ratio, CPU ratio
    assert "256 test images as pixels" in done.stdout  # digits have no files
