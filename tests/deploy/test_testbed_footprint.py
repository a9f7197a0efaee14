"""The footprint measurement (deploy docs: the edge agent's RSS and CPU on one core) measures a real,
pinned agent under load."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecloud.evaluation.footprint import measure

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not on PATH")]


def test_footprint_of_a_pinned_edge_under_load(tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray],
                                               tmp_path: Path) -> None:
    x, _ = tiny_test_split
    affinity = os.sched_getaffinity(0)
    result = measure(tiny_bundle, x[:96], core=0, log_dir=tmp_path, concurrency=2)
    assert os.sched_getaffinity(0) == affinity  # the measuring process is put back where it was
    assert result.cpus_allowed == "0"
    assert result.samples == 96 and result.samples_per_s > 0
    # An onnxruntime + FastAPI process holds tens of MiB at least; the peak is never below what was sampled.
    assert 30 < result.rss_idle_mib <= result.rss_peak_mib
    assert result.rss_warm_mib <= result.rss_peak_mib and result.rss_mean_load_mib <= result.rss_peak_mib
    assert result.cpu_s > 0 and 0 < result.cpu_share <= 1.05  # one core at most (tick rounding aside)
    assert result.cpu_ms_per_sample == pytest.approx(1e3 * result.cpu_s / 96)
    assert 0 < result.offload_rate < 1
