"""`orchestrate sim | live` settings: the spec's defaults < --config < EDGECLOUD_ORCHESTRATE__ < flags, and
OUT/config.json, which runs the same simulation again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecloud.cli import build_parser, main
from edgecloud.commands.orchestrate import LIVE_FLAGS, SIM_FLAGS, _layers, _sim_requirements
from orchestration.profiles import profiles_from_manifest
from orchestration.spec import LiveSpec, SimSpec
from shared.run_config import ConfigError, Scope, resolve


def _traces(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        (folder / f"trace_{i}").write_text("".join(f"{t}\t{5.0 + i}\n" for t in range(60)))
    return folder


def _sim(argv: list[str]) -> SimSpec:
    args = build_parser().parse_args(["orchestrate", "sim", *argv])
    return resolve(SimSpec, Scope.ORCHESTRATE, _layers(args, SIM_FLAGS), finish=_sim_requirements)


def test_sim_defaults_file_variables_flags(variant_bundle: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--bundle", str(variant_bundle), "--users", "2", "--traces", str(tmp_path), "--out", str(tmp_path / "o")]
    spec = _sim([*base, "--accuracy-req", "97.5"])
    assert spec == SimSpec(bundle=variant_bundle, users=2, traces=tmp_path, accuracy_req=0.975)  # the defaults
    (tmp_path / "sim.json").write_text(json.dumps({"users": 5, "network": {"wan_rtt_ms": 90.0, "access_rtt_ms": 10.0},
                                                   "hardware": {"edge_cores": 2}, "accuracy_req": 0.5}))
    file = ["--bundle", str(variant_bundle), "--traces", str(tmp_path), "--out", str(tmp_path / "o"),
            "--config", str(tmp_path / "sim.json")]
    spec = _sim(file)
    assert (spec.users, spec.network.wan_rtt_ms, spec.network.access_rtt_ms, spec.hardware.edge_cores) == (
        5, 90.0, 10.0, 2)
    monkeypatch.setenv("EDGECLOUD_ORCHESTRATE__NETWORK__WAN_RTT_MS", "100")
    monkeypatch.setenv("EDGECLOUD_ORCHESTRATE__SEEDS", "2")
    spec = _sim(file)
    assert (spec.network.wan_rtt_ms, spec.network.access_rtt_ms, spec.seeds) == (100.0, 10.0, 2)
    spec = _sim([*file, "--wan-rtt-ms", "110", "--seeds", "1", "--edge-cores", "3", "--deadline-ms", "0"])
    assert (spec.network.wan_rtt_ms, spec.seeds, spec.hardware.edge_cores, spec.deadline_ms) == (110.0, 1, 3, None)
    # A mix given in a file, its levels relative to the teacher, weighted by a flag.
    monkeypatch.delenv("EDGECLOUD_ORCHESTRATE__SEEDS")
    (tmp_path / "mix.json").write_text(json.dumps({"requirements": {"levels": [0.0, -0.05], "switch_s": "Infinity"}}))
    teacher = profiles_from_manifest(variant_bundle).variants["teacher"].accuracy
    spec = _sim([*base, "--config", str(tmp_path / "mix.json"), "--level-weights", "1", "3"])
    assert spec.mix.levels == (0.0, round(teacher - 0.05, 6)) and spec.mix.weights == (1.0, 3.0)
    assert spec.mix.switch_s == float("inf")


def test_a_requirement_is_one_level_or_a_mix_from_any_layer(variant_bundle: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--bundle", str(variant_bundle), "--users", "2", "--traces", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(ValueError, match=r"give one of --accuracy-req .* or --accuracy-levels"):
        _sim(base)
    # Weights and a switch time without levels shape no mix: every request keeps its one requirement.
    assert _sim([*base, "--accuracy-req", "0.9", "--level-switch-s", "5"]).requirements is None
    monkeypatch.setenv("EDGECLOUD_ORCHESTRATE__REQUIREMENTS__LEVELS", "[0.5, 0.6]")
    assert _sim(base).mix.levels == (0.5, 0.6)
    with pytest.raises(ValueError, match="give one of"):
        _sim([*base, "--accuracy-req", "0.9"])


def test_live_defaults_are_its_own_and_it_needs_a_requirement(variant_bundle: Path, tmp_path: Path) -> None:
    argv = ["orchestrate", "live", "--bundle", str(variant_bundle), "--users", "2", "--traces", str(tmp_path),
            "--out", str(tmp_path / "o")]
    args = build_parser().parse_args([*argv, "--accuracy-req", "0.9", "--kill-edge-at", "3"])
    spec = resolve(LiveSpec, Scope.ORCHESTRATE, _layers(args, LIVE_FLAGS))
    assert (spec.scenario, spec.duration_s, spec.policies, spec.rounds) == (
        "steady", 60.0, ["qlearning", "linucb", "greedy", "all-edge"], 1)
    assert (spec.out, spec.kill_edge_at_s, spec.network.access_rtt_ms, spec.network.wan_rtt_ms) == (
        tmp_path / "o", 3.0, 20.0, 60.0)
    with pytest.raises(ConfigError, match="accuracy_req: missing: give --accuracy-req, "
                                          "EDGECLOUD_ORCHESTRATE__ACCURACY_REQ"):
        resolve(LiveSpec, Scope.ORCHESTRATE, _layers(build_parser().parse_args(argv), LIVE_FLAGS))


def test_sim_writes_the_settings_it_used_and_they_run_it_again(variant_bundle: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    traces, out = _traces(tmp_path / "traces"), tmp_path / "sim"
    (tmp_path / "sim.json").write_text(json.dumps({"network": {"wan_rtt_ms": 80.0}, "scenario": "steady"}))
    monkeypatch.setenv("EDGECLOUD_ORCHESTRATE__HARDWARE__CLOUD_CORES", "2")
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2", "--traces", str(traces),
                 "--accuracy-req", "0.9", "--out", str(out), "--duration", "8", "--seeds", "1",
                 "--policies", "greedy,all-edge", "--config", str(tmp_path / "sim.json")])
    assert code == 0, capsys.readouterr().err
    used = json.loads((out / "config.json").read_text())
    assert used == json.loads(SimSpec(bundle=variant_bundle, users=2, traces=traces, accuracy_req=0.9,
                                      scenario="steady", duration_s=8.0, seeds=1, policies=["greedy", "all-edge"],
                                      network={"wan_rtt_ms": 80.0}, hardware={"cloud_cores": 2}).model_dump_json())
    report = json.loads((out / "report.json").read_text())
    assert report["network"]["wan_rtt_ms"] == 80.0 and report["hardware"]["cloud"]["cores"] == 2
    monkeypatch.delenv("EDGECLOUD_ORCHESTRATE__HARDWARE__CLOUD_CORES")
    again = tmp_path / "again"
    assert main(["orchestrate", "sim", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert json.loads((again / "report.json").read_text())["policies"] == report["policies"]


def test_a_mix_runs_again_from_the_settings_it_wrote(variant_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    traces, out = _traces(tmp_path / "traces"), tmp_path / "sim"
    assert main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2", "--traces", str(traces),
                 "--accuracy-levels", "0", "-0.05", "--level-switch-s", "inf", "--out", str(out), "--duration", "5",
                 "--seeds", "1", "--policies", "all-edge"]) == 0, capsys.readouterr().err
    used = json.loads((out / "config.json").read_text())
    assert "accuracy_req" not in used and used["requirements"]["switch_s"] == "Infinity"
    assert main(["orchestrate", "sim", "--config", str(out / "config.json"), "--out", str(tmp_path / "again")]) == 0
    first, again = (json.loads((d / "report.json").read_text()) for d in (out, tmp_path / "again"))
    assert again["requirements"] == first["requirements"] and again["policies"] == first["policies"]
