"""A link that is up plus the processes running on either side of it, all stopped on the way out.

`serve_across(port)` is how a cloud-side server becomes reachable from the edge at
`cloud_ip:port` *with the link's delay*: with netem the server listens there itself; without, it
listens on the cloud namespace's loopback and the EMULATED delay proxy listens there instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from testbed import delay_proxy
from testbed.netns import DelayMode, Link, Side, TestbedError, link_up, python_argv, signals_exit
from testbed.profiles import LinkProfile
from testbed.services import Service, stop_service

SHIM_PORT_OFFSET = 10_000  # behind the proxy, a server listens on loopback at PORT + this


def wait_for_line(service: Service, text: str, *, timeout_s: float = 30.0) -> None:
    """Block until SERVICE's log has TEXT; fail with the log if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while text not in service.log_tail(100_000):
        if service.process.poll() is not None:
            raise TestbedError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
        if time.monotonic() > deadline:
            raise TestbedError(f"{service.name} not ready after {timeout_s:.0f} s:\n{service.log_tail()}")
        time.sleep(0.05)


@dataclass
class Bed:
    link: Link
    log_dir: Path
    services: list[Service] = field(default_factory=list)
    cpus: dict[Side, frozenset[int]] = field(default_factory=dict)
    """cores each side's servers are pinned to (none: wherever the scheduler puts them)"""

    @property
    def delay_label(self) -> str:
        if self.link.delay == "netem":
            return f"netem delay {self.link.profile.one_way_delay_ms:g} ms each way"
        return f"EMULATED delay: user-space TCP proxy, {self.link.profile.one_way_delay_ms:g} ms each way (no netem)"

    def spawn(self, side: Side, name: str, argv: Sequence[str]) -> Service:
        process = self.link.spawn(side, name, argv, log_dir=self.log_dir)
        service = Service(name, "", process, self.log_dir / f"{name}.log")
        self.services.append(service)
        return service

    def start_edgecloud(self, side: Side, name: str, args: Sequence[str], *, host: str, port: int) -> Service:
        service = self.link.start_edgecloud(side, name, args, host=host, port=port, log_dir=self.log_dir,
                                            cpus=self.cpus.get(side))
        self.services.append(service)
        return service

    def serve_across(self, port: int) -> tuple[str, int]:
        """(host, port) a cloud-side server must listen on to be reached at cloud_ip:PORT across the link."""
        if self.link.delay == "netem":
            return self.link.cloud_ip, port
        inner = port + SHIM_PORT_OFFSET
        proxy = self.spawn("cloud", f"delay-proxy-{port}", python_argv(
            "testbed.delay_proxy", "--listen", f"{self.link.cloud_ip}:{port}",
            "--target", f"127.0.0.1:{inner}", "--delay-ms", str(self.link.profile.one_way_delay_ms)))
        wait_for_line(proxy, delay_proxy.READY_LINE)
        return "127.0.0.1", inner

    def check_alive(self) -> None:
        """Raise, with its log, if a process this bed started has exited."""
        for service in self.services:
            if service.process.poll() is not None:
                raise TestbedError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")

    def run_in_edge(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                    stdout: IO[bytes] | None = None) -> int:
        """Run ARGV in the edge namespace to completion and return its exit code.

        The command stays in the terminal's process group, so `run wifi -- bash` is an interactive
        shell whose Ctrl-C is its own (this process ignores SIGINT meanwhile). This bed's processes are
        watched: if one dies, or this process gets SIGTERM/SIGHUP, the command is stopped too.
        """
        process = subprocess.Popen(self.link.exec_argv("edge", argv), stdout=stdout,
                                   env={**os.environ, **self.environment(), **(env or {})})
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while process.poll() is None:
                self.check_alive()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.5)
            return int(process.returncode)
        finally:
            signal.signal(signal.SIGINT, previous)
            if process.poll() is None:
                # Our own process group: signal the command alone, never the group.
                process.terminate()
                try:
                    process.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def environment(self) -> dict[str, str]:
        """What a command in the edge namespace is told about the link."""
        link = self.link
        return {"TESTBED_PROFILE": link.profile.name, "TESTBED_CLOUD_IP": link.cloud_ip,
                "TESTBED_EDGE_IP": link.edge_ip, "TESTBED_EDGE_NS": link.names.edge_ns,
                "TESTBED_CLOUD_NS": link.names.cloud_ns, "TESTBED_DELAY": link.delay}

    def stop_all(self) -> None:
        for service in reversed(self.services):
            stop_service(service, grace_s=10.0)


@contextlib.contextmanager
def testbed(profile: LinkProfile, *, log_dir: Path, tag: str | None = None, delay: DelayMode = "auto",
            cpus: dict[Side, frozenset[int]] | None = None) -> Iterator[Bed]:
    """The link, and a Bed to start processes on it; processes stop, then the namespaces go."""
    with signals_exit(), link_up(profile, tag=tag, delay=delay) as link:
        bed = Bed(link, log_dir, cpus=dict(cpus or {}))
        try:
            yield bed
        finally:
            bed.stop_all()
