"""bench/offloader_gain.py: the outcome classes, the gain score, and a run on a real bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from offloader_gain import BOTH_RIGHT, BOTH_WRONG, GAIN, LOSS, fit_gain, gain_scores, outcomes

BENCH = Path(__file__).resolve().parents[2] / "bench" / "offloader_gain.py"


def test_outcomes_name_what_offloading_does() -> None:
    s_ok = np.array([True, False, True, False])
    t_ok = np.array([True, True, False, False])
    assert outcomes(s_ok, t_ok).tolist() == [BOTH_RIGHT, GAIN, LOSS, BOTH_WRONG]


def test_the_gain_score_ranks_gain_samples_first() -> None:
    rng = np.random.default_rng(0)
    # One feature says which outcome a sample has: gain samples high, loss samples low.
    outcome = rng.integers(0, 4, size=400)
    x = np.c_[np.select([outcome == GAIN, outcome == LOSS], [2.0, -2.0], 0.0) + rng.normal(0, 0.3, 400)]
    score = gain_scores(fit_gain(x, outcome, 1.0), x)
    assert score[outcome == GAIN].min() > score[outcome == LOSS].max()


def test_it_runs_on_a_bundle_and_prints_the_ceiling_and_every_score(tiny_bundle: Path) -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--bundle", str(tiny_bundle), "--draws", "20"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ceiling of any offloader" in result.stdout
    for row in ("| max_softmax |", "| entropy |", "| margin |", "| shipped |", "| gain C=0.01 |"):
        assert row in result.stdout
