"""The link testbed's parts that need no root: profiles, tc commands, tolerances, the delay proxy,
the results table, and the refusal to run without root."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecloud.evaluation.results import results_table
from testbed import netns
from testbed.delay_proxy import ProxyConfig, serve
from testbed.linkcheck import Measurement, judge
from testbed.netns import LinkNames, burst_bytes, missing_privileges, shaping_commands
from testbed.profiles import PROFILES, get_profile
from testbed.services import free_port
from tests.deploy.tools import DEPLOY_DIR, REPO_ROOT, explain

TESTBED_SH = DEPLOY_DIR / "testbed" / "testbed.sh"


def test_profiles_are_the_issues_links() -> None:
    assert {name: (p.rate_mbit, p.rtt_ms) for name, p in PROFILES.items()} == {
        "lan": (1000.0, 1.0), "wifi": (20.0, 20.0), "lte": (10.0, 60.0), "3g": (2.0, 150.0)}
    with pytest.raises(ValueError, match=r"unknown link profile '5g'.*lan, wifi, lte, 3g"):
        get_profile("5g")


def test_tbf_shapes_each_end_at_the_profile_rate() -> None:
    wifi = get_profile("wifi")
    (command,) = shaping_commands("ectb-x-e", wifi, netem=False)
    assert command[:7] == ["tc", "qdisc", "add", "dev", "ectb-x-e", "root", "handle"]
    assert command[command.index("tbf") + 1: command.index("tbf") + 3] == ["rate", "20000000bit"]
    burst = int(command[command.index("burst") + 1])
    assert burst == burst_bytes(wifi) >= wifi.rate_bit_s / 8 / 100  # enough tokens for one tick at HZ=100
    for profile in PROFILES.values():
        assert burst_bytes(profile) >= 2 * 1514


def test_netem_puts_half_the_rtt_on_each_end_above_the_tbf() -> None:
    root, child = shaping_commands("dev0", get_profile("lte"), netem=True)
    assert root[root.index("netem"):root.index("netem") + 3] == ["netem", "delay", "30.0ms"]
    assert child[child.index("parent") + 1] == "1:1" and "tbf" in child


def test_cpu_lists_are_parsed_and_checked() -> None:
    usable = os.sched_getaffinity(0)
    low = min(usable)
    assert netns.parse_cpus(str(low)) == {low}
    assert netns.parse_cpus(f"{low}-{low}, {low}") == {low}
    for bad, message in (("a", "expected core numbers"), ("3-1", "runs backwards"), ("", "expected core numbers"),
                         (str(max(usable) + 1000), "not available")):
        with pytest.raises(netns.TestbedError, match=message) as info:
            netns.parse_cpus(bad, what="--edge-cpus")
        assert "--edge-cpus" in str(info.value)


def test_spawn_pins_the_process_and_its_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without root there is no namespace to enter; the pinning is the same either way.
    monkeypatch.setattr(netns.Link, "exec_argv", lambda self, side, argv: list(argv))
    link = netns.Link(get_profile("wifi"), LinkNames.for_tag("tpin"), "shim")
    core = max(os.sched_getaffinity(0))
    probe = ("import os, threading; seen = []; t = threading.Thread(target=lambda: seen.append("
             "sorted(os.sched_getaffinity(0)))); t.start(); t.join(); print(sorted(os.sched_getaffinity(0)), seen[0])")
    process = link.spawn("edge", "probe", [sys.executable, "-c", probe], log_dir=tmp_path, cpus=frozenset({core}))
    assert process.wait(timeout=60) == 0
    assert (tmp_path / "probe.log").read_text().split() == [f"[{core}]", f"[{core}]"]


def test_names_fit_linux_limits_and_bad_tags_are_refused() -> None:
    names = LinkNames.for_tag("abcdefgh")
    assert max(len(names.edge_dev), len(names.cloud_dev)) <= 15  # IFNAMSIZ - 1
    assert names.edge_ns != names.cloud_ns
    for bad in ("", "UPPER", "way-too-long", "a b"):
        with pytest.raises(ValueError, match="1-8 lowercase letters or digits"):
            LinkNames.for_tag(bad)


def test_judge_accepts_a_link_on_target_and_flags_one_off_target() -> None:
    wifi = get_profile("wifi")
    good = Measurement(rtt_ms=21.0, rtt_median_ms=20.5, up_mbit=19.2, down_mbit=19.1, bytes_each_way=1)
    assert all(v.ok for v in judge(wifi, good))
    slow = Measurement(rtt_ms=60.0, rtt_median_ms=59.0, up_mbit=9.0, down_mbit=19.1, bytes_each_way=1)
    assert {v.metric for v in judge(wifi, slow) if not v.ok} == {"rtt_ms", "up_mbit"}
    # No link beats its own delay: an RTT well under target means the delay is missing.
    missing_delay = Measurement(rtt_ms=1.0, rtt_median_ms=0.5, up_mbit=19.2, down_mbit=19.1, bytes_each_way=1)
    assert [v.metric for v in judge(wifi, missing_delay) if not v.ok] == ["rtt_ms"]


def test_missing_capabilities_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000000000\n")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    assert "without CAP_NET_ADMIN and CAP_SYS_ADMIN" in (missing_privileges(status) or "")
    status.write_text(f"CapEff:\t{(1 << 12) | (1 << 21):016x}\n")
    assert missing_privileges(status) is None
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert missing_privileges(status) == "it runs as uid 1000, not root"


def _unprivileged(argv: list[str]) -> list[str]:
    """ARGV as a user without the testbed's privileges: as is if we are not root, else through setpriv."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("root, but no setpriv (util-linux) to drop privileges with", pytrace=False)
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]


def _rootless(argv: list[str]) -> list[str]:
    """ARGV as root without any capability (a container's root), or as is if we are not root."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("root, but no setpriv (util-linux) to drop capabilities with", pytrace=False)
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", *argv]


def _namespaces() -> set[str]:
    if shutil.which("ip") is None:
        return set()
    return set(netns.list_namespaces())


@pytest.mark.parametrize("subcommand", [["check", "wifi"], ["run", "wifi", "--", "true"], ["cleanup", "--all"]])
def test_the_script_refuses_clearly_as_an_ordinary_user(subcommand: list[str]) -> None:
    before = _namespaces()
    result = subprocess.run(_unprivileged([str(TESTBED_SH), *subcommand]), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, explain(result)
    assert "needs root" in result.stderr and "sudo" in result.stderr, explain(result)
    assert _namespaces() == before


def test_the_testbed_refuses_root_without_capabilities() -> None:
    before = _namespaces()
    env = {**os.environ, "EDGECLOUD_PYTHON": sys.executable}
    result = subprocess.run(_rootless([str(TESTBED_SH), "check", "wifi"]), capture_output=True, text=True,
                            timeout=60, check=False, env=env)
    assert result.returncode == 2, explain(result)
    assert "needs root" in result.stderr, explain(result)
    if os.geteuid() == 0:
        assert "without CAP_NET_ADMIN and CAP_SYS_ADMIN" in result.stderr, explain(result)
    assert _namespaces() == before


def test_eval_link_refuses_without_root_and_names_the_problem(tmp_path: Path) -> None:
    # The privileges are checked before anything else, so no bundle is needed to see the refusal.
    result = subprocess.run(_rootless([sys.executable, "-m", "edgecloud", "eval", "--link", "wifi", "--bundle",
                                       str(tmp_path / "bundle"), "--out", str(tmp_path)]),
                            capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT)
    assert result.returncode == 2, explain(result)
    assert "edgecloud eval: the link testbed needs root" in result.stderr, explain(result)


@pytest.mark.parametrize(("extra", "message"), [
    ([], "give --edge-url (a running edge agent) or --link PROFILE"),
    (["--link", "wifi", "--edge-url", "http://127.0.0.1:1"], "--link starts its own cloud and edge"),
    (["--link", "5g"], "unknown link profile '5g'"),
    (["--edge-url", "http://127.0.0.1:1", "--edge-cpus", "0"], "pin services you start yourself with taskset"),
])
def test_eval_link_options_are_checked(tmp_path: Path, extra: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "edgecloud", "eval", "--bundle", str(tmp_path / "bundle"), "--out",
                             str(tmp_path), *extra], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, explain(result)
    assert message in result.stderr, explain(result)


def _report(runtimes: dict[str, float], *, link: bool = True) -> dict[str, object]:
    strategies = {name: {"runtime_s": t, "accuracy": 0.99, "offload_rate": 0.1, "p50_ms": 1.0, "answered": 10,
                         "samples": 10} for name, t in runtimes.items()}
    report: dict[str, object] = {"samples": 10, "bundle": "b", "strategies": strategies, "batch_size": 1,
                                 "concurrency": 4, "repeat": 3}
    if link:
        report["link"] = {"profile": "lte", "rate_mbit": 10.0, "rtt_ms": 60.0,
                          "measured": {"rtt_ms": 61.0, "up_mbit": 9.6, "down_mbit": 9.5}}
    return report


def test_results_table_has_every_strategy_and_the_two_runtime_ratios() -> None:
    text = results_table([_report({"edge_only": 10.0, "cloud_only": 40.0, "cooperation": 20.0})])
    rows = text.splitlines()
    block = rows[2:5]
    assert [r.split(" | ")[1] for r in block] == ["edge-only", "cloud-only", "cooperation"]
    assert block[0].startswith("| lte (10 Mbit/s, 60 ms)") and block[1].startswith("|  | cloud-only | 40.00 |")
    assert "measured 61.0 ms, 9.6/9.5 Mbit/s" in text
    # cooperation / edge-only = 20 / 10, cloud-only / cooperation = 40 / 20, saved 1 - 20 / 40
    assert "| lte | 10 | 1 × 4 | 3 | 2.00x | 2.00x | 50.0% |" in rows
    slow = _report({"edge_only": 10.0})
    slow["link"]["checks"] = [{"metric": "rtt_ms", "ok": True}, {"metric": "up_mbit", "ok": False}]
    assert "(outside tolerance: up_mbit)" in results_table([slow])
    with pytest.raises(ValueError, match="not made across a link"):
        results_table([_report({"edge_only": 1.0}, link=False)])


# ---- the delay proxy (the EMULATED delay), on loopback ----

async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _through_proxy(delay_ms: float, payload: bytes) -> tuple[float, float, bytes]:
    """(first round trip, a later round trip, everything echoed back) through the proxy to an echo server."""
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    proxy_port = free_port()
    ready = asyncio.Event()
    proxy = asyncio.create_task(serve(ProxyConfig("127.0.0.1", proxy_port, "127.0.0.1", echo_port, delay_ms),
                                      ready=ready))
    await ready.wait()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        rtts = []
        for _ in range(2):
            started = time.perf_counter()
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            rtts.append(time.perf_counter() - started)
        writer.write(payload)
        writer.write_eof()  # the FIN crosses the proxy too, and the echo server's close comes back
        echoed = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
        return rtts[0], rtts[1], echoed
    finally:
        proxy.cancel()
        echo.close()


def test_delay_proxy_adds_the_delay_each_way_and_keeps_every_byte() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    first, later, echoed = asyncio.run(_through_proxy(40.0, payload))
    assert echoed == payload
    # A round trip is at least the delay twice; the first also pays the emulated TCP handshake.
    assert later >= 0.080, later
    assert first >= 0.160, first
