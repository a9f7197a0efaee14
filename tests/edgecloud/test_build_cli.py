"""`edgecloud train-teacher | compress | train-offloader | build` on digits, with a tiny JSON config.

A real ResNet teacher, RL search, SP-KD, ONNX export and QBC offloader: the same code paths as the
fast preset, only with a handful of optimiser steps, so the whole offline half runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecloud.cli import main
from shared import bundle as B

TINY = {
    "teacher": {"width": 4, "epochs": 1, "batch_size": 64},
    "search": {"episodes": 1, "rollouts": 2, "episode_steps": 2, "episode_subset": 256, "size_budget": 0.3},
    "distill": {"epochs": 1},
    "offload": {"budget": 0.25, "folds": 2, "fold_epochs": 1},
}
pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def _check_bundle(out: Path) -> B.Manifest:
    manifest = B.load_manifest(out)  # verifies every sha256
    assert manifest.dataset == "digits"
    assert manifest.input.shape == [1, 8, 8] and manifest.input.dtype == "uint8"
    assert set(manifest.files) >= {"student.onnx", "offloader.pkl", "teacher.pt"}
    m = manifest.metrics
    # The budget held: the student is at most 30% of the teacher's bytes.
    assert 0 < m.student_bytes <= 0.3 * m.teacher_bytes
    assert 0.0 <= m.student_accuracy <= 1.0 and 0.0 <= m.teacher_accuracy <= 1.0
    op = manifest.operating_point
    extra = op.model_dump()
    assert np.isfinite(op.threshold)
    # A calibrated score is P(student wrong). An offloader this tiny build cannot calibrate (its score
    # ranks right samples above wrong ones on val) ships its raw score, and the manifest says so.
    if extra["score"].startswith("P(student wrong)"):
        assert 0.0 <= op.threshold <= 1.0
    else:
        assert extra["score"] == "the offloader's raw score"
    assert op.budget == 0.25 and op.val_offload_rate <= 0.25 + 1e-9
    # The default rule aims at the teacher's validation accuracy and says so.
    assert op.rule == "target" and extra["target_source"] == "teacher" and extra["reason"]
    # The offloader learnt from cross-fitted logits: one out-of-fold row per training sample.
    assert extra["offloader_fit_source"] == "crossfit"
    oof = np.load(out / B.REPORTS / "crossfit_logits.npz")["logits"]
    assert oof.shape == (manifest.metrics.model_dump()["student_distilled_on"], 10)
    # Fusion's parameters are in the manifest, where the edge reads them.
    assert {"student_weight", "student_temperature", "teacher_temperature"} <= set(extra["fusion"])
    reports = out / B.REPORTS
    for name in ("episodes.csv", "reward_over_episodes.png", "offloader_candidates.md", "search_best.pt",
                 "accuracy_vs_offload.png", "build.json", "metrics.json"):
        assert (reports / name).is_file(), name
    return manifest


def test_the_three_stages_one_by_one_write_a_verified_bundle(
    tmp_path: Path, tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    assert main(["train-teacher", "--out", str(out), "--config", str(tiny_config), "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    saved = json.loads((out / B.REPORTS / "build.json").read_text())
    assert saved["teacher"]["arch"]["width"] == 4 and saved["search"]["size_budget"] == 0.3

    assert main(["compress", "--bundle", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| teacher |" in printed and "| student |" in printed and "student / teacher size" in printed
    assert (out / B.STUDENT_ONNX).is_file()

    assert main(["train-offloader", "--bundle", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for title in ("Table I", "Table II", "Tables III–IV", "QBC vs random normal samples"):
        assert title in printed
    assert "student size: " in printed and "target ≤ 30%" in printed
    assert "How sure: test offload to reach the teacher over 500 paired bootstrap draws" in printed
    _check_bundle(out)

    # A stage can be rerun with other settings: the paper's boundary rule, reusing the cached fold logits.
    oof = (out / B.REPORTS / "crossfit_logits.npz").stat().st_mtime_ns
    boundary = tiny_config.parent / "boundary.json"
    boundary.write_text(json.dumps({"offload": {"rule": "boundary", "bootstrap_draws": 0}}))
    assert main(["train-offloader", "--bundle", str(out), "--config", str(boundary), "--no-progress"]) == 0
    assert B.load_manifest(out).operating_point.rule in ("boundary", "budget")
    assert "How sure" not in capsys.readouterr().out  # bootstrap_draws 0 skips the bootstrap
    summary = json.loads((out / B.REPORTS / "offloading_summary.json").read_text())
    assert summary["reach_bootstrap"] is None
    assert (out / B.REPORTS / "crossfit_logits.npz").stat().st_mtime_ns == oof
    # ... but not the settings of an earlier stage.
    teacher = tiny_config.parent / "teacher.json"
    teacher.write_text(json.dumps({"teacher": {"epochs": 2}}))
    assert main(["train-offloader", "--bundle", str(out), "--config", str(teacher), "--no-progress"]) == 2
    assert "settings teacher belong to an earlier stage" in capsys.readouterr().err

    # compress --reuse-search distils the previous search's best student again, without searching.
    episodes = (out / B.REPORTS / "episodes.csv").stat().st_mtime_ns
    assert main(["compress", "--bundle", str(out), "--reuse-search", "--no-progress"]) == 0
    assert (out / B.REPORTS / "episodes.csv").stat().st_mtime_ns == episodes


def test_build_runs_every_stage_and_prints_the_tables(
    tmp_path: Path, tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    assert main(["build", "--out", str(out), "--config", str(tiny_config), "--size-budget", "0.2",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Table I" in printed and "offload threshold" in printed
    manifest = _check_bundle(out)
    # --size-budget wins over the config file's 0.3.
    assert manifest.metrics.student_bytes <= 0.2 * manifest.metrics.teacher_bytes


def test_a_stage_without_its_predecessor_says_which_command_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compress", "--bundle", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "run `edgecloud train-teacher --out" in capsys.readouterr().err


def test_a_bad_config_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"teacher": {"widht": 8}}')
    assert main(["build", "--out", str(tmp_path / "b"), "--config", str(bad)]) == 2
    assert "unknown teacher setting(s) widht" in capsys.readouterr().err
