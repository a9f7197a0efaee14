"""Two network namespaces (edge, cloud) joined by a veth pair, shaped with tc; always torn down.

Bandwidth: a token bucket (tbf) on each end's egress, so each direction gets the profile's rate.
Delay: netem on each end (half the RTT each way) where the kernel has it; otherwise the link
carries no delay of its own and the caller puts `delay_proxy` (a user-space emulation) in front of
the cloud. `link_up` probes for netem rather than trusting a kernel config file.

Only what this run created is deleted: a namespace that already existed under our name is left alone
(it may be another run's), and the run fails saying so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from testbed.profiles import LinkProfile
from testbed.services import Service

DelayMode = Literal["auto", "netem", "shim"]
DELAY_MODES: tuple[str, ...] = ("auto", "netem", "shim")
Side = Literal["edge", "cloud"]

NS_PREFIX = "ectb-"
SUBNET = "10.200.0"                   # a /30 inside the pair of namespaces only; never seen by the host
EDGE_IP, CLOUD_IP, PREFIX_LEN = f"{SUBNET}.1", f"{SUBNET}.2", 30
MTU_FRAME_BYTES = 1514                # Ethernet frame of a full 1500-byte packet, as tbf counts it
QUEUE_LATENCY_MS = 100                # tbf queue: the longest a packet may wait before it is dropped
# capability bits (linux/capability.h): veth and tc need NET_ADMIN, `ip netns add` mounts, so SYS_ADMIN.
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
TOOLS: dict[str, str] = {"ip": "iproute2", "tc": "iproute2"}
_TAG = re.compile(r"^[a-z0-9]{1,8}$")


class TestbedError(RuntimeError):
    """The testbed could not be built, run or torn down; the message says what and why."""


class NotPrivilegedError(TestbedError):
    """Run without the root privileges namespaces and tc need."""


def missing_privileges(status_path: Path = Path("/proc/self/status")) -> str | None:
    """Why this process cannot build the testbed, or None if it can."""
    if os.geteuid() != 0:
        return f"it runs as uid {os.geteuid()}, not root"
    fields = dict(line.split(":", 1) for line in status_path.read_text().splitlines() if ":" in line)
    effective = int(fields.get("CapEff", "0").strip(), 16)
    lacking = [name for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
               if not effective >> bit & 1]
    if lacking:
        return f"it runs as root but without {' and '.join(lacking)} (a container or a dropped bounding set?)"
    return None


def require_privileges() -> None:
    reason = missing_privileges()
    if reason is not None:
        raise NotPrivilegedError(
            f"the link testbed needs root: it creates network namespaces, a veth pair and tc qdiscs "
            f"(CAP_NET_ADMIN and CAP_SYS_ADMIN), and {reason}. Run it with sudo, e.g. "
            f"`sudo deploy/testbed/testbed.sh check wifi`.")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOLS[t] for t in missing}))
        raise TestbedError(f"the link testbed needs {', '.join(missing)} on PATH: "
                           f"`sudo apt-get install --no-install-recommends {packages}`")


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a setup command; a failure raises TestbedError with the command and its stderr."""
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def list_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@dataclass(frozen=True)
class LinkNames:
    """Every name one testbed uses, derived from its tag so that runs with different tags coexist."""

    tag: str
    edge_ns: str
    cloud_ns: str
    edge_dev: str
    cloud_dev: str

    @classmethod
    def for_tag(cls, tag: str) -> LinkNames:
        if not _TAG.match(tag):
            raise ValueError(f"testbed name {tag!r} must be 1-8 lowercase letters or digits")
        # Interface names are at most 15 bytes: "ectb-" + 8 + "-e" fits.
        return cls(tag, f"{NS_PREFIX}{tag}-edge", f"{NS_PREFIX}{tag}-cloud", f"{NS_PREFIX}{tag}-e",
                   f"{NS_PREFIX}{tag}-c")


def default_tag() -> str:
    return f"p{os.getpid() % 10_000_000}"


def burst_bytes(profile: LinkProfile) -> int:
    """tbf bucket: 10 ms at the link rate (above rate/HZ for HZ >= 100), at least two full frames."""
    return max(int(profile.rate_bit_s / 8 * 0.010), 2 * MTU_FRAME_BYTES)


def shaping_commands(dev: str, profile: LinkProfile, *, netem: bool) -> list[list[str]]:
    """tc commands for one end's egress: tbf at the profile's rate, below netem's delay when `netem`."""
    tbf = ["tbf", "rate", f"{int(profile.rate_bit_s)}bit", "burst", str(burst_bytes(profile)),
           "latency", f"{QUEUE_LATENCY_MS}ms"]
    if not netem:
        return [["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", *tbf]]
    # netem delays every packet by half the RTT; tbf, its child, then paces them at the link rate.
    return [["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem", "delay",
             f"{profile.one_way_delay_ms}ms", "limit", "100000"],
            ["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", *tbf]]


@dataclass(frozen=True)
class Link:
    """A link that is up: where each side lives and how its delay is made."""

    profile: LinkProfile
    names: LinkNames
    delay: Literal["netem", "shim"]   # shim: the caller must put delay_proxy in front of the cloud
    edge_ip: str = EDGE_IP
    cloud_ip: str = CLOUD_IP

    def namespace(self, side: Side) -> str:
        return self.names.edge_ns if side == "edge" else self.names.cloud_ns

    def exec_argv(self, side: Side, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(side), *argv]

    def spawn(self, side: Side, name: str, argv: Sequence[str], *, log_dir: Path,
              env: dict[str, str] | None = None, cpus: frozenset[int] | None = None) -> subprocess.Popen[bytes]:
        """Start ARGV inside SIDE's namespace in a session of its own, output in LOG_DIR/NAME.log.

        CPUS pins it (and every thread it starts) to those cores, as `taskset` would.
        """
        log_dir.mkdir(parents=True, exist_ok=True)
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
        with (log_dir / f"{name}.log").open("wb") as log:
            return subprocess.Popen(self.exec_argv(side, argv), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env={**os.environ, **(env or {})},
                                    preexec_fn=pin)  # one syscall, no locks: safe in the forked child

    def start_edgecloud(self, side: Side, name: str, args: Sequence[str], *, host: str, port: int,
                        log_dir: Path, cpus: frozenset[int] | None = None) -> Service:
        """`edgecloud ARGS --host H --port P` inside SIDE's namespace, as an testbed.services Service."""
        # `ip netns exec` execs the command in place, so the pid is the server's own and
        # services.stop_service stops it as it stops any other service.
        process = self.spawn(side, name, python_argv("edgecloud", *args, "--host", host, "--port", str(port)),
                             log_dir=log_dir, cpus=cpus)
        return Service(name, f"http://{host}:{port}", process, log_dir / f"{name}.log")


def _netem_available(names: LinkNames) -> bool:
    probe = ["ip", "netns", "exec", names.edge_ns, "tc", "qdisc", "add", "dev", names.edge_dev, "root", "handle",
             "1:", "netem", "delay", "0ms"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return False
    _run(["ip", "netns", "exec", names.edge_ns, "tc", "qdisc", "del", "dev", names.edge_dev, "root"])
    return True


def stop_processes_in(ns: str, *, grace_s: float = 5.0) -> None:
    """SIGTERM what still runs in NS (say, a server a `run` command started there), SIGKILL it after GRACE_S.

    A process keeps a deleted namespace alive, veth and all; the namespace is this testbed's, and so is
    anything inside it.
    """
    def pids() -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        remaining = pids()
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while remaining and time.monotonic() < deadline:
            time.sleep(0.05)
            remaining = pids()
        if not remaining:
            return


def delete_namespaces(names: Sequence[str]) -> None:
    errors = []
    for ns in names:
        stop_processes_in(ns)
        result = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, check=False)
        if result.returncode != 0 and ns in list_namespaces():
            errors.append(f"{ns}: {result.stderr.strip()}")
    if errors:
        raise TestbedError(f"could not delete network namespaces ({'; '.join(errors)}); "
                           f"delete them with `sudo ip netns del NAME`")


@contextlib.contextmanager
def link_up(profile: LinkProfile, *, tag: str | None = None, delay: DelayMode = "auto") -> Iterator[Link]:
    """Build the shaped link; delete its namespaces (and so the veth pair) however the block exits."""
    if delay not in DELAY_MODES:
        raise ValueError(f"delay must be one of {', '.join(DELAY_MODES)}, got {delay!r}")
    require_privileges()
    require_tools()
    names = LinkNames.for_tag(tag or default_tag())
    created: list[str] = []
    try:
        existing = list_namespaces()
        for ns in (names.edge_ns, names.cloud_ns):
            if ns in existing:
                raise TestbedError(f"network namespace {ns} already exists (another testbed named {names.tag!r}, "
                                   f"or one killed before it could clean up: `sudo ip netns del {ns}`)")
            _run(["ip", "netns", "add", ns])
            created.append(ns)
        # Made inside the edge namespace with its peer in the cloud one: no half-moved veth is ever left
        # in the host's namespace, and deleting the namespaces deletes the pair.
        _run(["ip", "-n", names.edge_ns, "link", "add", names.edge_dev, "type", "veth", "peer", "name",
              names.cloud_dev, "netns", names.cloud_ns])
        for ns, dev, ip in ((names.edge_ns, names.edge_dev, EDGE_IP), (names.cloud_ns, names.cloud_dev, CLOUD_IP)):
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX_LEN}", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        has_netem = _netem_available(names)
        if delay == "netem" and not has_netem:
            raise TestbedError("--delay netem: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM); "
                               "use --delay shim (or auto) for the user-space delay emulation")
        use_netem = has_netem and delay != "shim"
        for ns, dev in ((names.edge_ns, names.edge_dev), (names.cloud_ns, names.cloud_dev)):
            for command in shaping_commands(dev, profile, netem=use_netem):
                _run(["ip", "netns", "exec", ns, *command])
        yield Link(profile, names, "netem" if use_netem else "shim")
    finally:
        delete_namespaces(list(reversed(created)))


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def signals_exit() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit while the block runs, so `finally` clauses tear down."""
    previous = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_cpus(text: str, *, what: str = "cpus") -> frozenset[int]:
    """"0", "0,2" or "0-3" -> those core numbers, each one this process may run on."""
    cores: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise TestbedError(f"{what} {text!r}: expected core numbers like 0, 0,2 or 0-3")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise TestbedError(f"{what} {text!r}: range {low}-{high} runs backwards")
        cores.update(range(low, high + 1))
    usable = os.sched_getaffinity(0)
    if not cores <= usable:
        raise TestbedError(f"{what} {text!r}: core(s) {sorted(cores - usable)} not available; "
                           f"this process may use {sorted(usable)}")
    return frozenset(cores)


def python_argv(module: str, *args: str) -> list[str]:
    """`python -m MODULE ARGS` with this interpreter (the same venv inside the namespaces)."""
    return [sys.executable, "-m", module, *args]
