"""bench/cloud_batching.py runs end to end on the tiny bundle: pinning, a real server, the printed ratio.

Only that it measures what its lines say; the ratio itself is a benchmark's business, not a test's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import REPO_ROOT, explain

SCRIPT = REPO_ROOT / "bench" / "cloud_batching.py"
pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          check=False, cwd=REPO_ROOT)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the default split needs two cores")
def test_the_default_splits_cores_and_prints_a_consistent_ratio(tiny_bundle: Path) -> None:
    result = _run("--bundle", str(tiny_bundle), "--seconds", "1", "--rounds", "2", "--samples-per-request", "2")
    assert result.returncode == 0, explain(result)
    out = result.stdout
    first = min(os.sched_getaffinity(0))
    assert f"clients [{first}]" in out and f"server + raw [{first}]" not in out, out
    raw = float(re.search(r"raw\s*:\s*([\d.]+) samples/s", out)[1])
    served = float(re.search(r"served\s*:\s*([\d.]+) samples/s", out)[1])
    assert raw > 0 and served > 0, out
    assert "x 2 sample(s) per request, 0 non-200 answers" in out, out
    ratio = float(re.search(r"ratio\s*:\s*([\d.]+)", out)[1])
    assert ratio == pytest.approx(served / raw, abs=0.006), out  # medians, printed with two decimals
    assert len(re.findall(r"^round \d+: raw", out, re.M)) == 2, out  # --rounds 2: raw and served alternate


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="with one core nothing is pinned")
def test_cores_it_cannot_use_are_refused_by_name(tiny_bundle: Path) -> None:
    bad = max(os.sched_getaffinity(0)) + 1000
    result = _run("--bundle", str(tiny_bundle), "--seconds", "1", "--server-cpus", str(bad))
    assert result.returncode != 0
    assert f"--server-cpus '{bad}': core(s) [{bad}] not available" in result.stderr, explain(result)
