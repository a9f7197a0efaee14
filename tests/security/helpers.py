"""Raw-socket clients and server fixtures shared by the security tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testbed.services import Service, free_port, start_service, stop_service, wait_ready


@dataclass(frozen=True)
class Trickle:
    """What a slow client saw: seconds until the server closed (None: still open at the end), bytes sent/read."""

    closed_after_s: float | None
    sent: int
    reply: bytes


def trickle(port: int, data: bytes, *, gap_s: float, max_s: float, host: str = "127.0.0.1") -> Trickle:
    """Send `data` one byte every `gap_s` (then nothing), reading all the while, until the server closes."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(gap_s)
    started = time.monotonic()
    sent = 0
    reply = b""
    try:
        while time.monotonic() - started < max_s:
            if sent < len(data):
                try:
                    sock.sendall(data[sent:sent + 1])
                except OSError:  # reset or broken pipe: the server is gone
                    return Trickle(time.monotonic() - started, sent, reply)
                sent += 1
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return Trickle(time.monotonic() - started, sent, reply)
            if not chunk:
                return Trickle(time.monotonic() - started, sent, reply)
            reply += chunk
        return Trickle(None, sent, reply)
    finally:
        sock.close()


def port_of(service: Service) -> int:
    return int(service.url.rsplit(":", 1)[1])


@contextmanager
def serving(name: str, args: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None,
            timeout_s: float = 90.0) -> Iterator[Service]:
    """`edgecloud ARGS` on a free loopback port, ready, stopped afterwards."""
    service = start_service(name, list(args), port=free_port(), log_dir=log_dir, env=env)
    try:
        wait_ready(service, timeout_s=timeout_s)
        yield service
    finally:
        stop_service(service)
