from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from offloading.filters import FILTERS
from offloading.models import CANDIDATES
from offloading.report import format_tables, write_offloading_report
from offloading.train import OffloaderConfig, OffloaderResult, train_offloader


@pytest.fixture(scope="module")
def result(synthetic: dict) -> OffloaderResult:
    return train_offloader(**synthetic, cfg=OffloaderConfig(candidates=("svm", "knn")))


def test_report_writes_every_file(result: OffloaderResult, tmp_path: Path) -> None:
    paths = write_offloading_report(result, tmp_path / "reports")
    names = {p.name for p in paths}
    assert names == {"offloader_candidates.csv", "offloader_candidates.md", "qbc_vs_random.csv",
                     "filters_at_operating_point.csv", "accuracy_vs_offload.png", "candidates_vs_filters.png",
                     "offloading_summary.json"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)

    with (tmp_path / "reports" / "offloader_candidates.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["svm", "knn"]
    assert float(rows[0]["size_kb"]) == pytest.approx(result.candidates[0].size_kb)
    with (tmp_path / "reports" / "qbc_vs_random.csv").open() as handle:
        assert {"qbc_accuracy", "random_accuracy"} <= set(next(csv.DictReader(handle)))

    for png in ("accuracy_vs_offload.png", "candidates_vs_filters.png"):
        assert (tmp_path / "reports" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "reports" / "offloading_summary.json").read_text())
    assert summary["operating_point"]["filter"] == "sl"
    assert summary["operating_point"]["threshold"] == result.operating_point["threshold"]
    assert summary["selection"]["complex"] == result.n_complex
    assert summary["config"]["budget"] == 0.2
    assert summary["fit_source"] == "train" and summary["temperature"] == result.temperature
    assert summary["fusion"]["params"]["student_weight"] == result.operating_point["fusion"]["student_weight"]
    # The evaluation overlays these offline curves on its live results (sl_fusion: with fusion).
    assert set(summary["curves"]) == set(FILTERS) | {"sl_fusion"}
    sl = summary["curves"]["sl"]
    assert len(sl["offload_rate"]) == len(sl["accuracy"]) <= 500
    assert sl["offload_rate"][0] == 0.0 and sl["offload_rate"][-1] == 1.0
    assert set(summary["candidate_curves"]) == {"svm", "knn"}
    boot = summary["reach_bootstrap"]
    assert boot["shipped"] == "sl" and boot["rivals"] == ["max_softmax", "entropy", "margin"]
    assert boot["draws"] == result.config.bootstrap_draws and 0.0 <= boot["share_no_more"] <= 1.0


def test_format_tables_lists_models_and_filters(result: OffloaderResult) -> None:
    text = format_tables(result)
    assert "| svm |" in text and "| knn |" in text
    assert all(f"| {name} |" in text for name in FILTERS)
    assert "budget 0.20" in text and "rule target" in text
    assert "offload to reach the teacher" in text and "with fusion (w = " in text
    assert result.operating_point["reason"] in text
    boot = result.reach_bootstrap
    assert boot is not None
    assert f"over {boot.draws} paired bootstrap draws" in text
    assert f"in {100 * boot.share_no_more:.0f}% of draws" in text
    assert boot.share_on_or_above is not None and boot.at_rate == result.test_offload_rate
    assert f"every filter's in {100 * boot.share_on_or_above:.0f}% of draws" in text
    assert f"offload rate ({100 * boot.at_rate:.2f}%) |" in text
    assert f"| {100 * boot.accuracy_at_rate[0]:.2f}% |" in text
    assert not any(f"| {name} |" in text for name in set(CANDIDATES) - {"svm", "knn"})


def test_fusion_line_says_when_nothing_is_offloaded(result: OffloaderResult) -> None:
    import dataclasses

    assert result.fusion is not None
    idle = dataclasses.replace(result.fusion, test_offloaded_teacher_accuracy=float("nan"),
                               test_offloaded_fused_accuracy=float("nan"))
    text = format_tables(dataclasses.replace(result, fusion=idle))
    assert "no test sample is offloaded" in text and "nan" not in text.split("with fusion")[1]
