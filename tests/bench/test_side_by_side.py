"""bench/_side_by_side.py: the verdicts come from the median rounds, and what is printed says what was computed."""

from __future__ import annotations

import re

import pytest
from _side_by_side import CompareConfig, Report, Round, ServerName, ServerRound, format_report


def _server(rate: float, p99: float) -> ServerRound:
    return ServerRound(samples_per_s=rate, p50_ms=p99 / 4, p95_ms=p99 / 2, p99_ms=p99, non_200=0,
                       server_cpu_ms_per_request=0.5, server_core_use=0.9, mean_batch=4.0, generator_cpu=0.3,
                       other_idle_cpu=0.01)


def _report(rounds: list[tuple[float, float, float, float, float]]) -> Report:
    """rounds of (raw, ours samples/s, ours p99, Triton samples/s, Triton p99)."""
    report = Report(
        config={"concurrency": 32, "samples_per_request": 1, "seconds": 5.0, "warmup_s": 1.0,
                "max_batch_size": 64, "max_queue_delay_ms": 2.0},
        threads=1, server_cpus=[1], client_cpus=[0],
        versions={"onnxruntime": "1", "triton_onnxruntime": "1"},
        placement={ServerName.OURS: {"processes": 1, "threads": 3, "cores": [1]},
                   ServerName.TRITON: {"processes": 4, "threads": 80, "cores": [1]}},
        answer_check={"samples": 8, "source": "test", "ours": {"labels_agree": True, "max_abs_logit_diff": 0.0},
                      "triton": {"labels_agree": True, "max_abs_logit_diff": 0.0}},
    )
    report.rounds = [Round(raw_samples_per_s=raw, servers={ServerName.OURS: _server(ours, ours_p99),
                                                           ServerName.TRITON: _server(triton, triton_p99)})
                     for raw, ours, ours_p99, triton, triton_p99 in rounds]
    return report


def test_verdicts_are_ratios_of_the_median_rounds() -> None:
    # The outlier round (raw 100) moves no median: raw 1000, ours 900, ours p99 10, Triton p99 8.
    report = _report([(1000, 900, 10, 500, 8), (1100, 950, 12, 600, 9), (100, 50, 9, 50, 7)])
    assert report.served_over_raw() == pytest.approx(900 / 1000)
    assert report.p99_ratio() == pytest.approx(10 / 8)
    verdicts = report.to_json()["verdicts"]
    assert verdicts["served_over_raw_met"] is True
    assert verdicts["p99_ratio_met"] is False
    assert verdicts["served_over_raw_per_round"] == pytest.approx([0.9, 950 / 1100, 0.5])
    assert report.to_json()["summary"]["ours"]["p99_ms"] == {"median": 10.0, "low": 9.0, "high": 12.0}


def test_the_printed_verdicts_match_the_table() -> None:
    out = format_report(_report([(1000, 800, 6, 500, 8), (1000, 820, 7, 500, 9), (1000, 790, 5, 480, 8)]))
    served = re.search(r"served / raw \(ours\)\s*: ([\d.]+) = (\d+) / (\d+) .*target >= 0.85: NOT met", out)
    assert served is not None, out
    assert (float(served[1]), served[2], served[3]) == (0.8, "800", "1000")
    p99 = re.search(r"p99 ours / p99 Triton: ([\d.]+) = ([\d.]+) / ([\d.]+) ms .*target <= 1.0: met", out)
    assert p99 is not None, out
    assert (float(p99[1]), p99[2], p99[3]) == (0.75, "6.00", "8.00")
    assert "| ours (edgecloud cloud serve) | 800 [790-820] |" in out


def test_a_config_that_cannot_run_is_refused_by_value() -> None:
    with pytest.raises(ValueError, match="rounds=0"):
        CompareConfig(rounds=0, server_cpus=frozenset({1}), client_cpus=frozenset({0}))
    with pytest.raises(ValueError, match="samples_per_request 100 exceeds check_samples 64"):
        CompareConfig(samples_per_request=100, server_cpus=frozenset({1}), client_cpus=frozenset({0}))
    with pytest.raises(ValueError, match="server_cpus"):
        CompareConfig()
