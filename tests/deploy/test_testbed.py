"""The link testbed for real (root, iproute2): the wifi link measures as specified, the namespaces
go away whatever happens, and `edgecloud eval --link` runs the three strategies across it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.netns import LinkNames, list_namespaces, missing_privileges
from testbed.profiles import get_profile
from tests.deploy.tools import DEPLOY_DIR, explain


def _unavailable() -> str | None:
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH (Debian package iproute2; `make system-deps` installs it)"
    reason = missing_privileges()
    return None if reason is None else f"the link testbed needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN: {reason}"


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))]

TESTBED_SH = DEPLOY_DIR / "testbed" / "testbed.sh"
ENV = {**os.environ, "EDGECLOUD_PYTHON": sys.executable}


def run_testbed(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TESTBED_SH), *args], capture_output=True, text=True, timeout=timeout_s,
                          check=False, env=ENV)


def ours(tag: str) -> set[str]:
    names = LinkNames.for_tag(tag)
    return {names.edge_ns, names.cloud_ns} & set(list_namespaces())


def test_wifi_link_measures_its_rtt_and_bandwidth(tmp_path: Path) -> None:
    result = run_testbed("check", "wifi", "--json", "--name", "twifi", "--logs", str(tmp_path))
    assert result.returncode == 0, explain(result)
    report = json.loads(result.stdout)
    wifi = get_profile("wifi")
    measured = report["measured"]
    # 20 ms RTT, 20 Mbit/s: a veth pair unshaped moves gigabits, and takes microseconds.
    assert 0.9 * wifi.rtt_ms <= measured["rtt_ms"] <= 1.15 * wifi.rtt_ms + 4, measured
    for direction in ("up_mbit", "down_mbit"):
        assert 0.8 * wifi.rate_mbit <= measured[direction] <= 1.05 * wifi.rate_mbit, measured
    assert report["ok"] is True and all(c["ok"] for c in report["checks"])
    assert "netem" in report["delay"] or "EMULATED" in report["delay"], report["delay"]
    assert ours("twifi") == set()


def test_a_failing_command_still_tears_the_namespaces_down() -> None:
    # The command leaves a server running in the cloud namespace, as `run` users do, then fails.
    result = run_testbed("run", "wifi", "--name", "tfail", "--", "sh", "-c",
                         'ip -o -4 addr show; echo "cloud at $TESTBED_CLOUD_IP"; '
                         'ip netns exec "$TESTBED_CLOUD_NS" sh -c \'sleep 300 & echo "left pid $!"\'; exit 7')
    assert result.returncode == 7, explain(result)
    assert "10.200.0.1/30" in result.stdout, explain(result)        # it ran inside the edge namespace
    assert "cloud at 10.200.0.2" in result.stdout, explain(result)
    assert ours("tfail") == set()
    left = int(result.stdout.split("left pid ")[1].split()[0])
    # What ran inside the testbed's namespaces went with them (a live process would keep them alive).
    assert not Path(f"/proc/{left}").exists() or "sleep" not in Path(f"/proc/{left}/cmdline").read_text()


def test_a_terminated_testbed_tears_the_namespaces_down() -> None:
    process = subprocess.Popen([str(TESTBED_SH), "run", "wifi", "--name", "tterm", "--", "sleep", "120"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60.0
        while len(ours("tterm")) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the testbed's namespaces never appeared"
            time.sleep(0.1)
        time.sleep(0.5)  # let it reach its command
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert ours("tterm") == set()


def test_a_failed_setup_deletes_what_it_made_and_nothing_else() -> None:
    names = LinkNames.for_tag("tclash")
    subprocess.run(["ip", "netns", "add", names.cloud_ns], check=True)  # someone else's, in the way
    try:
        result = run_testbed("run", "wifi", "--name", "tclash", "--", "true")
        assert result.returncode == 2, explain(result)
        assert f"network namespace {names.cloud_ns} already exists" in result.stderr, explain(result)
        assert ours("tclash") == {names.cloud_ns}  # its own edge namespace gone, the other one kept
    finally:
        subprocess.run(["ip", "netns", "del", names.cloud_ns], check=False)


def test_eval_across_the_wifi_link(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-m", "edgecloud", "eval", "--link", "wifi", "--link-name", "teval", "--bundle",
         str(tiny_bundle), "--out", str(out), "--limit", "60", "--no-progress", "--no-link-check",
         "--edge-cpus", str(min(os.sched_getaffinity(0))), "--cloud-cpus", str(max(os.sched_getaffinity(0)))],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, explain(result)
    assert ours("teval") == set()
    report = json.loads((out / "report.json").read_text())
    assert report["link"]["profile"] == "wifi"
    assert report["link"]["cpus"] == {"edge": [min(os.sched_getaffinity(0))],
                                      "cloud": [max(os.sched_getaffinity(0))]}
    strategies = report["strategies"]
    assert set(strategies) == {"edge_only", "cloud_only", "cooperation"}
    for name, s in strategies.items():
        assert s["answered"] == 60 and s["errors"] == [], (name, s)
    cloud_only = strategies["cloud_only"]
    assert cloud_only["sources"]["cloud"] == 60, cloud_only  # every sample crossed the link and came back
    # Each of those requests crossed a 20 ms RTT link: no cloud-only latency can be shorter.
    assert cloud_only["p50_ms"] >= 20.0, cloud_only
    assert strategies["edge_only"]["sources"]["edge"] == 60
    assert "link: wifi (20 Mbit/s, 20 ms RTT" in (out / "report.md").read_text()
