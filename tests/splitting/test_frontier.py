"""bench/split_frontier.py: greedy's accuracy weight moves it along the accuracy-latency frontier, a
planner's row is what `split eval` measures, and the pick is the fastest row at or above the floor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shared.traces import load_traces
from splitting.evaluate import evaluate_strategies, summarise
from splitting.setup import SplitSetup
from tests.deploy.tools import REPO_ROOT
from tests.splitting.test_headroom import _traces

sys.path.insert(0, str(REPO_ROOT / "bench"))
import split_frontier  # bench/ holds scripts, not a package


def test_the_weight_trades_accuracy_for_latency_and_the_pick_keeps_the_floor(
        profiled_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traces = _traces(tmp_path / "traces")
    out = tmp_path / "frontier.json"
    assert split_frontier.main(["--bundle", str(profiled_bundle), "--traces", str(traces), "--weights", "0.0001",
                                "100", "--planners", str(profiled_bundle), "--strategy", "greedy",
                                "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    cheap, dear, spec = report["points"]
    assert cheap["expected_accuracy"] < dear["expected_accuracy"]
    assert cheap["mean_latency_ms"] < dear["mean_latency_ms"]
    # The bundle's own greedy (its spec's weight) is the row `split eval` reports for it.
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    labels = [a.label(setup.space.n_stages) for a in setup.space.actions]
    evaluated = summarise(evaluate_strategies(setup, load_traces(traces), ["greedy"]), labels)["greedy"]
    assert spec["mean_latency_ms"] == pytest.approx(evaluated["mean_latency_ms"])
    assert spec["test_accuracy"] == pytest.approx(evaluated["accuracy"])
    above = [p for p in report["points"] if p["expected_accuracy"] >= report["floor"]]
    assert report["picked"] == min(above, key=lambda p: p["mean_latency_ms"])["label"]
    assert "picked" in capsys.readouterr().out


def test_nothing_to_measure_is_a_usage_error(profiled_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        split_frontier.main(["--bundle", str(profiled_bundle), "--traces", str(_traces(tmp_path / "t"))])
    assert exc.value.code == 2
