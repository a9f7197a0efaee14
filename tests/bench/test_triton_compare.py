"""bench/triton_compare.py runs end to end on the tiny bundle against a real Triton server.

What it prints must be what it measured: both servers answered onnxruntime's labels and every
request with 200, everything ran on the cores it claims, and each verdict is the ratio of the
numbers printed beside it (and in the JSON). Whether the targets are met is the benchmark's business.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import REPO_ROOT, explain

SCRIPT = REPO_ROOT / "bench" / "triton_compare.py"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                       reason="the servers and the load generator need a core each; this machine gives one"),
]



def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return float(match[1])


def test_both_servers_answer_on_the_server_core_and_the_verdicts_match(
        triton_venv: None, tiny_bundle: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--bundle", str(tiny_bundle), "--seconds", "1", "--warmup", "0.5",
         "--rounds", "2", "--concurrency", "8", "--out", str(out_json)],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO_ROOT)
    assert result.returncode == 0, explain(result)
    out = result.stdout
    first = min(os.sched_getaffinity(0))
    servers = sorted(os.sched_getaffinity(0) - {first})
    assert f"cores     : servers + raw {servers}, load generator [{first}]" in out, out
    # Every process of both servers (Triton's pytriton, tritonserver and stub included) on the server cores.
    for name in ("ours", "triton"):
        cores = re.search(rf"{name} \d+ process\(es\), \d+ threads on (\[[\d, ]+\])", out)
        assert cores is not None and set(json.loads(cores[1])) <= set(servers), out
    assert re.search(r"triton [2-9]\d* process\(es\)", out), out  # tritonserver and its stub were looked at
    assert "ours labels agree" in out and "triton labels agree" in out, out

    report = json.loads(out_json.read_text())
    for name in ("ours", "triton"):
        assert report["answer_check"][name]["label_mismatches"] == 0
        for one_round in report["rounds"]:
            assert one_round[name]["samples_per_s"] > 0, report
            assert one_round[name]["non_200"] == 0, report
            assert one_round[name]["mean_batch"] >= 1.0, report  # read from the server's own counters
    assert "| ours (edgecloud cloud serve) | " in out and "| Triton (pytriton, python backend) | " in out, out

    # Each verdict is the ratio of the numbers printed beside it, which are the JSON's medians.
    served = _number(r"served / raw \(ours\)\s*: ([\d.]+) =", out)
    ours_rate = _number(r"served / raw \(ours\)\s*: [\d.]+ = (\d+) /", out)
    raw_rate = _number(r"served / raw \(ours\)\s*: [\d.]+ = \d+ / (\d+)", out)
    summary, verdicts = report["summary"], report["verdicts"]
    assert ours_rate == round(summary["ours"]["samples_per_s"]["median"])
    assert raw_rate == round(summary["raw_samples_per_s"]["median"])
    assert served == pytest.approx(verdicts["served_over_raw"], abs=0.00051)  # printed with three decimals
    assert served == pytest.approx(ours_rate / raw_rate, rel=0.01, abs=0.0006)
    assert verdicts["served_over_raw"] == pytest.approx(
        summary["ours"]["samples_per_s"]["median"] / summary["raw_samples_per_s"]["median"])
    p99 = _number(r"p99 ours / p99 Triton: ([\d.]+) =", out)
    ours_p99 = _number(r"p99 ours / p99 Triton: [\d.]+ = ([\d.]+) /", out)
    triton_p99 = _number(r"p99 ours / p99 Triton: [\d.]+ = [\d.]+ / ([\d.]+) ms", out)
    assert ours_p99 == pytest.approx(summary["ours"]["p99_ms"]["median"], abs=0.006)
    assert triton_p99 == pytest.approx(summary["triton"]["p99_ms"]["median"], abs=0.006)
    assert p99 == pytest.approx(verdicts["p99_ours_over_triton"], abs=0.00051)
    assert p99 == pytest.approx(ours_p99 / triton_p99, rel=0.01, abs=0.0006)
    assert verdicts["p99_ours_over_triton"] == pytest.approx(
        summary["ours"]["p99_ms"]["median"] / summary["triton"]["p99_ms"]["median"])
    met = "met" if verdicts["p99_ratio_met"] else "NOT met"
    assert f"(target <= 1.0: {met})" in out, out


def test_a_missing_triton_venv_is_named_with_the_command_that_makes_it(tiny_bundle: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    result = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(tiny_bundle), "--seconds", "1",
                             "--triton-python", str(missing)],
                            capture_output=True, text=True, timeout=300, check=False, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert f"{missing} does not exist; create .venv-triton with `make .venv-triton/.installed`" in result.stderr, \
        explain(result)
