"""Start the cloud server and the edge agent as subprocesses on free loopback ports, and stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, n_chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.is_file() else ""


def start_service(name: str, args: Sequence[str], *, port: int, log_dir: Path,
                  env: dict[str, str] | None = None, host: str = "127.0.0.1",
                  preexec_fn: Callable[[], None] | None = None) -> Service:
    """Run `edgecloud ARGS --host H --port P` with its output in LOG_DIR/NAME.log. `preexec_fn` runs in
    the child before it starts (e.g. entering a device emulation's cgroup, or pinning cores)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "edgecloud", *args, "--host", host, "--port", str(port)]
    with log_path.open("wb") as log:
        # A new session, so a Ctrl-C in the terminal reaches us, and we stop the children in order.
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
    return Service(name, f"http://{host}:{port}", process, log_path)


def wait_ready(service: Service, *, timeout_s: float = 120.0, path: str = "/v2/health/ready",
               poll_s: float = 0.2) -> None:
    """Poll ``path`` (the server's readiness) every ``poll_s`` until it answers 200; fail fast, with the
    service's log, if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}{path}", timeout=1.0).status_code == 200:
                return
        time.sleep(poll_s)
    raise TimeoutError(f"{service.name} at {service.url} not ready after {timeout_s:.0f} s:\n{service.log_tail()}")


def stop_service(service: Service, *, grace_s: float = 10.0) -> int:
    """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after `grace_s`."""
    if service.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.process.pid, signal.SIGTERM)
        try:
            service.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
    return int(service.process.returncode)


@contextlib.contextmanager
def running(bundle: Path, *, log_dir: Path, cloud_args: Sequence[str] = (), edge_args: Sequence[str] = (),
            env: dict[str, str] | None = None) -> Iterator[tuple[Service, Service]]:
    """Cloud, then edge pointed at it; both stopped (edge first) however the block exits."""
    cloud = start_service("cloud", ["cloud", "serve", "--bundle", str(bundle), *cloud_args],
                          port=free_port(), log_dir=log_dir, env=env)
    edge: Service | None = None
    try:
        wait_ready(cloud)
        edge = start_service("edge", ["edge", "serve", "--bundle", str(bundle), "--cloud-url", cloud.url,
                                      *edge_args], port=free_port(), log_dir=log_dir, env=env)
        wait_ready(edge)
        yield cloud, edge
    finally:
        if edge is not None:
            stop_service(edge)
        stop_service(cloud)
