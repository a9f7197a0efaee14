from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecloud.cli import main
from orchestration.profiles import DEFAULT_TIERS, ProfileError, Profiles, TierSpec, profiles_from_manifest
from shared.bundle import load_manifest
from shared.names import Tier
from shared.variant_profile import REQUEST_OVERHEAD_BYTES, profile_document, request_bytes

REPO = Path(__file__).resolve().parents[2]


def test_profiles_read_back_from_the_manifest(variant_bundle: Path) -> None:
    profiles = profiles_from_manifest(variant_bundle)
    assert set(profiles.variants) == {"variant-a", "variant-b", "teacher"}
    a, teacher = profiles.variants["variant-a"], profiles.variants["teacher"]
    assert teacher.accuracy > a.accuracy
    assert a.correct is not None and a.correct.mean() == pytest.approx(a.accuracy)
    # the device has a quarter of a core: 4x the edge server's time
    assert a.latency_ms[Tier.END] == pytest.approx(4 * a.latency_ms[Tier.EDGE])
    assert profiles.meeting(teacher.accuracy) == ["teacher"]


def test_a_bundle_without_variants_says_how_to_make_them(tiny_bundle: Path) -> None:
    with pytest.raises(ProfileError, match="edgecloud variants"):
        profiles_from_manifest(tiny_bundle)


def test_profiles_refuse_a_missing_teacher(profiles: Profiles) -> None:
    with pytest.raises(ProfileError, match="teacher"):
        Profiles(variants={"small": profiles.variants["small"]}, tiers=dict(DEFAULT_TIERS), teacher="teacher")
    with pytest.raises(ValueError, match="cpu_share"):
        TierSpec(cpu_share=0.0)


def flat_traces(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        (folder / f"trace_{i}").write_text("".join(f"{t}\t{5.0 + i}\n" for t in range(60)))
    return folder


def test_orchestrate_sim_writes_the_report_the_issue_specifies(variant_bundle: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "3",
                 "--traces", str(flat_traces(tmp_path / "traces")), "--accuracy-req", "0.9", "--out", str(out),
                 "--duration", "15", "--seeds", "1", "--rate", "3"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["users"] == 3 and report["accuracy_req"] == 0.9
    policies = report["policies"]
    for name in ("qlearning", "linucb", "greedy", "all-end", "all-edge", "all-cloud", "myopic-oracle", "static-map"):
        row = policies[name]
        assert row["answered"] == row["requests"] > 0
        assert set(row["tier_share"]) == {"end", "edge", "cloud"}
        assert row["p95_response_ms"] >= row["mean_response_ms"] * 0.5
        # one requirement every variant run meets: nothing missed; a flat link never runs out of time
        assert row["requirement_missed"] == 0.0 and row["fallback_share"] == 0.0
    statics = [k for k in policies if k.startswith("static:")]
    assert statics and all(k.split(":")[2] != "variant-a" for k in statics)  # variant-a misses 90%
    best = report["comparison"]["best_static"]
    assert best in statics or best in ("all-end", "all-edge", "all-cloud", "static-map")
    assert policies[best]["mean_response_ms"] == min(policies[k]["mean_response_ms"] for k in policies
                                                     if k.startswith(("static:", "static-map", "all-")))
    # the machines are recorded: the Pi 4 calibration, the edge and cloud cores
    device = report["hardware"]["device"]
    assert device["slowdown"] == pytest.approx(1 / report["end_cpu_share"])
    assert device["reference"] in report["variants"]
    assert device["calibrated"] and device["published_ms_per_image"] == 17.4
    assert report["hardware"]["cloud"] == {"cores": 4, "speed": 2.0} and report["deadline_ms"] == 1000.0
    assert (out / "response_cdf.png").stat().st_size > 0 and (out / "choices_qlearning.png").is_file()
    assert "best static" in capsys.readouterr().out


def test_orchestrate_sim_takes_a_requirement_mix_the_machines_and_the_old_oracle_name(
        variant_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    teacher = profiles_from_manifest(variant_bundle).variants["teacher"].accuracy
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2",
                 "--traces", str(flat_traces(tmp_path / "traces")), "--accuracy-levels", "0", "-0.05", "-0.009",
                 "--level-switch-s", "2", "--out", str(out), "--duration", "10", "--seeds", "1",
                 "--policies", "oracle,all-edge", "--scenario", "churn", "--device-slowdown", "50",
                 "--cloud-cores", "2", "--cloud-speed", "3", "--deadline-ms", "250", "--downlink-mbit-s", "20"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["requirements"]["levels"] == [0.0, round(teacher - 0.05, 6), round(teacher - 0.009, 6)]
    assert set(report["policies"]["oracle"]["levels"]) == {f"{x:g}" for x in report["requirements"]["levels"]}
    assert report["hardware"]["device"]["slowdown"] == 50.0 and not report["hardware"]["device"]["calibrated"]
    assert report["hardware"]["cloud"] == {"cores": 2, "speed": 3.0}
    assert report["deadline_ms"] == 250.0 and report["network"]["downlink_mbit_s"] == 20.0
    assert report["scenario"] == "churn" and len(report["change_times_s"]) == 3
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2", "--traces",
                 str(tmp_path / "traces"), "--out", str(tmp_path / "bad")])
    assert code == 2 and "--accuracy-levels" in capsys.readouterr().err


def test_the_request_is_what_a_device_sends() -> None:
    # an encoded image when the bundle records its size; the older whole-request field otherwise;
    # raw pixels + the overhead when neither is there
    assert request_bytes({"input_bytes": 921}, (3, 32, 32)) == 921 + REQUEST_OVERHEAD_BYTES
    assert request_bytes({"input_bytes": 921, "request_bytes": 3272}, (3, 32, 32)) == 921 + REQUEST_OVERHEAD_BYTES
    assert request_bytes({"request_bytes": 3272}, (3, 32, 32)) == 3272
    assert request_bytes({}, (3, 32, 32)) == 3072 + REQUEST_OVERHEAD_BYTES
    doc = profile_document(tiers=DEFAULT_TIERS, input_shape=(3, 32, 32), input_bytes=921, pareto_front=[])
    assert doc["input_bytes"] == 921 and doc["request_bytes"] == 1121 and doc["tiers"]["edge"]["cores"] == 1
    with pytest.raises(ProfileError, match="input_bytes"):
        request_bytes({"input_bytes": "a lot"}, (1, 8, 8))


def test_profiles_read_the_request_size_from_the_bundle(variant_bundle: Path, tmp_path: Path) -> None:
    assert profiles_from_manifest(variant_bundle).request_bytes == 64 + REQUEST_OVERHEAD_BYTES  # raw 8x8 digits
    bundle = Path(shutil.copytree(variant_bundle, tmp_path / "b"))
    doc = json.loads((bundle / "profile.json").read_text())
    (bundle / "profile.json").write_text(json.dumps({**doc, "input_bytes": 40}))
    manifest = load_manifest(bundle, verify=False)
    assert profiles_from_manifest(bundle, manifest).request_bytes == 40 + REQUEST_OVERHEAD_BYTES


def test_the_variant_builder_does_not_import_the_orchestrator() -> None:
    code = ("import sys, compression.variants\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'orchestration')\n"
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_request_bytes_slows_the_transfers_only(variant_bundle: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    traces = flat_traces(tmp_path / "traces")
    means = {}
    for size in ("1000", "100000"):
        out = tmp_path / f"sim-{size}"
        code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2", "--traces", str(traces),
                     "--accuracy-req", "0", "--out", str(out), "--duration", "10", "--seeds", "1",
                     "--policies", "all-end,all-edge", "--request-bytes", size, "--scenario", "steady"])
        assert code == 0, capsys.readouterr().err
        report = json.loads((out / "report.json").read_text())
        assert report["request_bytes"] == int(size)
        means[size] = {k: v["mean_response_ms"] for k, v in report["policies"].items()}
    assert means["100000"]["all-end"] == pytest.approx(means["1000"]["all-end"])
    # 99 kB more up a 5-6 Mbit/s link: about 140 ms more per edge request
    assert means["100000"]["all-edge"] - means["1000"]["all-edge"] == pytest.approx(99000 * 8 / 5.5e3, rel=0.15)
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2", "--traces", str(traces),
                 "--accuracy-req", "0", "--out", str(tmp_path / "bad"), "--request-bytes", "0"])
    assert code == 2 and "request_bytes" in capsys.readouterr().err


def test_orchestrate_sim_names_a_bad_flag(variant_bundle: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2",
                 "--traces", str(tmp_path / "nowhere"), "--accuracy-req", "0.9", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err
    code = main(["orchestrate", "sim", "--bundle", str(variant_bundle), "--users", "2",
                 "--traces", str(flat_traces(tmp_path / "t")), "--accuracy-req", "0.9", "--out", str(tmp_path / "o"),
                 "--policies", "qlearning,fastest"])
    assert code == 2
    assert "fastest" in capsys.readouterr().err


def test_orchestration_never_imports_torch() -> None:
    code = ("import sys, orchestration.profiles, orchestration.state, orchestration.learners, "
            "orchestration.policies, orchestration.simulator, orchestration.experiment, orchestration.report, "
            "orchestration.agent, orchestration.metrics, orchestration.change, orchestration.scenario, "
            "orchestration.links, orchestration.hardware, orchestration.bound, shared.variant_profile\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision'})\n"
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_accuracy_req_accepts_a_fraction_or_a_percentage() -> None:
    from edgecloud.commands.orchestrate import accuracy_fraction

    assert accuracy_fraction(0.975) == accuracy_fraction(97.5) == pytest.approx(0.975)
    with pytest.raises(ValueError, match="accuracy-req"):
        accuracy_fraction(120.0)
    assert np.isfinite(accuracy_fraction(0.0))


@pytest.mark.slow
def test_orchestrate_live_answers_every_request_when_the_edge_server_is_killed(
        variant_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "live"
    code = main(["orchestrate", "live", "--bundle", str(variant_bundle), "--users", "2",
                 "--traces", str(flat_traces(tmp_path / "traces")), "--accuracy-req", "0.9", "--out", str(out),
                 "--duration", "6", "--rate", "3", "--policies", "all-edge", "--kill-edge-at", "3",
                 "--no-trace-replay"])  # the shared proxies' path (the replaying one has its own test)
    assert code == 0, capsys.readouterr().err
    row = json.loads((out / "report.json").read_text())["policies"]["all-edge"]
    assert row["requests"] == row["answered"] > 10
    assert row["fallbacks"] > 0  # the requests after the kill were answered by the devices
    assert row["tier_share"]["edge"] == 1.0  # every one was sent to the edge server first
    assert json.loads((out / "report.json").read_text())["traces_replayed"] is False


def test_live_links_and_arrivals_are_the_simulators_for_the_same_seed(variant_bundle: Path, tmp_path: Path) -> None:
    from orchestration.live import user_links
    from orchestration.scenario import SCENARIOS
    from orchestration.simulator import Simulator
    from orchestration.spec import LiveSpec
    from shared.traces import load_traces

    traces = flat_traces(tmp_path / "traces")
    spec = LiveSpec(bundle=variant_bundle, users=3, traces=traces, accuracy_req=0.9, out=tmp_path / "o")
    profiles = profiles_from_manifest(variant_bundle)
    scenario = SCENARIOS["steady"](3, duration_s=10.0, rate_per_user=4.0, accuracy_req=0.9)
    links, times = user_links(spec, scenario, profiles, seed=2)
    sim = Simulator(profiles, SCENARIOS["steady"](3, duration_s=10.0, rate_per_user=4.0, accuracy_req=0.9, seed=2),
                    load_traces(traces))
    sim_links, requests = sim.requests()
    assert [(link.trace, link.offset_s) for link in links] == [(traces / s.trace.name, s.offset_s) for s in sim_links]
    assert [list(t) for t in times] == [[t for t, u, _ in requests if u == user] for user in range(3)]
    assert len({link.edge_port for link in links} | {link.cloud_port for link in links}) == 6


@pytest.mark.slow
def test_orchestrate_live_replays_each_devices_trace_and_the_race_answers_in_its_stalls(
        variant_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1 s at 5 Mbit/s, then 2 s of nothing, over and over: an offload sent into a stall waits for it to end
    # (trace replay in each device's own proxies), so the device's raced pass answers it first.
    folder = tmp_path / "stalls"
    folder.mkdir()
    (folder / "stall").write_text("".join(f"{t / 10:.1f}\t{5.0 if (t % 30) < 10 else 0.0}\n" for t in range(600)))
    out = tmp_path / "live"
    code = main(["orchestrate", "live", "--bundle", str(variant_bundle), "--users", "2", "--traces", str(folder),
                 "--accuracy-req", "0.9", "--out", str(out), "--duration", "8", "--rate", "3",
                 "--policies", "all-edge,all-edge+hedge"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["traces_replayed"] is True
    # the emulated device was calibrated on this host at the start, and the devices ran at that k
    assert report["device"]["calibrated"] is True
    assert report["device_slowdown"] == pytest.approx(report["device"]["slowdown"])
    plain, hedged = report["policies"]["all-edge"], report["policies"]["all-edge+hedge"]
    for row in (plain, hedged):
        assert row["requests"] == row["answered"] > 20
        # the devices (and their radios, told the trace start at launch) were up by the traces' start, or
        # nearly (a loaded CI machine may start them later than guessed; the report says by how much)
        assert sum(row["replay_late_s"]) < 5.0
    assert hedged["local_first_share"] > 0.2 and hedged["fallback_share"] == 0.0
    # the stalls cost the unraced policy up to their 2 s (or its 1 s client timeout); the race caps them
    assert plain["p95_response_ms"] > 500.0 > hedged["p95_response_ms"]


def test_the_live_device_is_calibrated_on_the_simulators_reference_timed_as_a_device_runs(
        variant_bundle: Path) -> None:
    from orchestration.hardware import TierHardware, reference_variant
    from orchestration.live import calibrate_device
    from testbed.slowdown import PI4_CIFAR10, calibrate

    profiles = profiles_from_manifest(variant_bundle)
    device = calibrate_device(variant_bundle, profiles, gap_s=0.01, passes=5)
    assert device["reference"] == reference_variant(profiles, TierHardware())
    assert device["reference_host_ms"] > 0
    assert device["slowdown"] == pytest.approx(calibrate(device["reference_host_ms"], PI4_CIFAR10))
    assert device["cpu_share"] == pytest.approx(1.0 / device["slowdown"])
