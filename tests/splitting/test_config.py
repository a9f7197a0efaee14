"""`split train` and `split eval` settings: the bundle's regime < --config < EDGECLOUD_SPLIT__ < flags, and the
settings a run used stored beside its results (eval: OUT/config.json; train: the bundle's split_config)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecloud.cli import build_parser, main
from shared.bundle import load_manifest, read_verified
from splitting.config import EVAL_FLAGS, TRAIN_FLAGS, SplitConfig, resolve_split, split_layers
from splitting.regime import Regime, ServerPayload
from splitting.setup import ARTIFACT_CONFIG, ARTIFACT_SPEC, SPEC_JSON, PlannerSpec, SplitSetup, store_artifact
from tests.helpers.trace_folder import trace_folder


def _resolve(argv: list[str], flags: dict[str, str]) -> SplitConfig:
    args = build_parser().parse_args(argv)
    return resolve_split(split_layers(args, flags),
                         bundle_regime=lambda bundle: SplitSetup.load(bundle, need_spec=False).regime)


def test_the_bundles_regime_then_file_then_variables_then_flags(profiled_bundle: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    trained = Regime(deadline_ms=300.0, rtt_ms=60.0, period_s=0.1, server_payload=ServerPayload.JPEG)
    store_artifact(bundle, ARTIFACT_SPEC, SPEC_JSON, json.dumps(PlannerSpec(trained).to_json()).encode())
    argv = ["split", "eval", "--bundle", str(bundle), "--traces", str(tmp_path), "--out", str(tmp_path / "o")]
    assert _resolve(argv, EVAL_FLAGS).regime == trained  # no layer: the regime the bundle was trained for
    (tmp_path / "split.json").write_text(json.dumps({"regime": {"deadline_ms": 200.0, "rtt_ms": 30.0},
                                                     "eval": {"max_traces": 1}}))
    cfg = _resolve([*argv, "--config", str(tmp_path / "split.json")], EVAL_FLAGS)
    assert (cfg.regime.deadline_ms, cfg.regime.rtt_ms, cfg.regime.period_s) == (200.0, 30.0, 0.1)
    assert cfg.eval.max_traces == 1
    monkeypatch.setenv("EDGECLOUD_SPLIT__REGIME__DEADLINE_MS", "150")
    monkeypatch.setenv("EDGECLOUD_SPLIT__EVAL__MAX_TRACES", "2")
    cfg = _resolve([*argv, "--config", str(tmp_path / "split.json")], EVAL_FLAGS)
    assert (cfg.regime.deadline_ms, cfg.regime.rtt_ms, cfg.eval.max_traces) == (150.0, 30.0, 2)
    cfg = _resolve([*argv, "--config", str(tmp_path / "split.json"), "--deadline-ms", "120", "--max-traces", "3"],
                   EVAL_FLAGS)
    assert (cfg.regime.deadline_ms, cfg.eval.max_traces) == (120.0, 3)
    monkeypatch.setenv("EDGECLOUD_SPLIT__REGIME__DEADLINE", "1")
    with pytest.raises(ValueError, match=r"EDGECLOUD_SPLIT__REGIME__DEADLINE: unknown regime setting\(s\) deadline"):
        _resolve(argv, EVAL_FLAGS)


def test_train_flags_keep_their_defaults_and_no_dqn_is_a_setting(profiled_bundle: Path) -> None:
    cfg = _resolve(["split", "train", "--bundle", str(profiled_bundle)], TRAIN_FLAGS)
    t = cfg.train
    assert (t.acc_weight, t.miss_penalty, t.steps, t.target_entropy_ratio, t.gamma, t.seed, t.dqn) == (
        20.0, 2.0, 30000, 0.3, 0.5, 0, True)
    assert [p.name for p in t.traces] == ["fcc", "norway-hsdpa"]
    cfg = _resolve(["split", "train", "--bundle", str(profiled_bundle), "--no-dqn", "--steps", "7",
                    "--downlink-traces", "down", "--rtt-ms", "9"], TRAIN_FLAGS)
    assert (cfg.train.dqn, cfg.train.steps, cfg.regime.downlink_traces, cfg.regime.rtt_ms) == (False, 7, ("down",), 9.0)
    assert cfg.train.dqn_config() is None and cfg.train.sac().total_steps == 7


def test_eval_writes_the_settings_it_used_beside_its_report(profiled_bundle: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    traces, out = trace_folder(tmp_path / "norway-hsdpa-test"), tmp_path / "eval"
    (tmp_path / "split.json").write_text(json.dumps({"regime": {"rtt_ms": 5.0}, "eval": {"duration_s": 5.0}}))
    monkeypatch.setenv("EDGECLOUD_SPLIT__EVAL__STRATEGIES", '["device_only", "server_only_raw"]')
    assert main(["split", "eval", "--bundle", str(profiled_bundle), "--traces", str(traces), "--out", str(out),
                 "--config", str(tmp_path / "split.json"), "--max-traces", "1"]) == 0
    used = json.loads((out / "config.json").read_text())
    assert "train" not in used and used["bundle"] == str(profiled_bundle)
    assert used["regime"]["rtt_ms"] == 5.0 and used["regime"]["deadline_ms"] == 100.0  # the bundle's deadline
    assert used["eval"] | {"traces": None} == {**SplitConfig(bundle=profiled_bundle).eval.model_dump(mode="json"),
                                              "duration_s": 5.0, "max_traces": 1,
                                              "strategies": ["device_only", "server_only_raw"]}
    report = json.loads((out / "report.json").read_text())
    assert report["link"]["rtt_ms"] == 5.0 and report["duration_s"] == 5.0 and len(report["trace_files"]) == 1
    assert set(report["strategies"]) == {"device_only", "server_only_raw"}
    # The settings file it wrote runs the same evaluation again.
    again = tmp_path / "again"
    monkeypatch.delenv("EDGECLOUD_SPLIT__EVAL__STRATEGIES")
    assert main(["split", "eval", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert json.loads((again / "report.json").read_text())["strategies"] == report["strategies"]


def test_eval_without_traces_says_where_to_give_them(profiled_bundle: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", "eval", "--bundle", str(profiled_bundle), "--out", str(tmp_path / "o")]) == 2
    assert "--traces, eval.traces in --config or EDGECLOUD_SPLIT__EVAL__TRACES" in capsys.readouterr().err
    assert main(["split", "eval", "--traces", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "bundle: missing: give --bundle, EDGECLOUD_SPLIT__BUNDLE" in capsys.readouterr().err


def test_train_stores_the_settings_it_used_beside_the_planners(profiled_bundle: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    traces = trace_folder(tmp_path / "up")
    (tmp_path / "split.json").write_text(json.dumps({"train": {"miss_penalty": 3.0, "acc_weight": 5.0}}))
    monkeypatch.setenv("EDGECLOUD_SPLIT__TRAIN__ACC_WEIGHT", "10")
    assert main(["split", "train", "--bundle", str(bundle), "--traces", str(traces), "--steps", "64", "--no-dqn",
                 "--config", str(tmp_path / "split.json"), "--deadline-ms", "250", "--no-progress"]) == 0
    spec = SplitSetup.load(bundle).spec
    assert (spec.acc_weight, spec.miss_penalty, spec.deadline_ms) == (10.0, 3.0, 250.0)
    assert spec.regime.uplink_traces == (str(traces),) and "dqn" not in spec.training
    manifest = load_manifest(bundle)  # verifies every hash, the settings' too
    stored = json.loads(read_verified(bundle, manifest, manifest.artifacts[ARTIFACT_CONFIG]))
    assert "eval" not in stored
    assert stored["train"] | {"traces": None} == {**SplitConfig(bundle=bundle).train.model_dump(mode="json"),
                                                 "traces": None, "acc_weight": 10.0, "miss_penalty": 3.0,
                                                 "steps": 64, "dqn": False}
    assert stored["regime"]["deadline_ms"] == 250.0 and stored["train"]["traces"] == [str(traces)]
