"""Slow-loris and oversized requests against real `edgecloud cloud serve` / `edge serve` processes.

Covered: request headers trickled byte by byte (header timeout, 408, closed), a connection that
sends nothing, a body trickled after complete headers (body timeout, 408, closed after the linger),
a body still trickling after an early 413, a client vanishing mid-body (a 400, not a logged 500),
other clients being served while slow ones hold connections, and a megabyte of request headers
(a 431, then closed: the server refuses a head past serving.server.MAX_HEAD_BYTES). Bodies over
max_body_bytes are refused with 413
before they are read (the early-413 test here; tests/cloud_server/test_bad_input.py in-process).
Not covered here: a slow *reader* of responses (answers are small and uvicorn applies write flow
control) and the number of connections one host may open (a job for a reverse proxy or a firewall).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.server import UNREAD_BODY_LINGER_S
from shared.oip import encode_request
from testbed.services import Service
from tests.security.helpers import port_of, serving, trickle

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
SLACK_S = 3.0
"""Scheduling slack on a loaded 2-core machine; the cut-offs themselves are the settings above."""

INFER = {"cloud": "/v2/models/teacher/infer", "edge": "/v2/models/edge/infer"}


@pytest.fixture(scope="module", params=["cloud", "edge"])
def server(request: pytest.FixtureRequest, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Service]]:
    side: str = request.param
    args = [side, "serve", "--bundle", str(tiny_bundle), "--threads", "1",
            "--header-timeout-s", str(HEADER_TIMEOUT_S), "--body-timeout-s", str(BODY_TIMEOUT_S)]
    with serving(side, args, log_dir=tmp_path_factory.mktemp(f"{side}-logs")) as service:
        yield side, service


def _head(path: str, content_length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {content_length}\r\n\r\n").encode()


def _send_head_then_trickle(port: int, head: bytes, body: bytes, *, max_s: float) -> tuple[float | None, bytes]:
    """Headers in one write, then the body one byte every 0.1 s; (seconds until closed, reply)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.1)
    started = time.monotonic()
    reply = b""
    try:
        sock.sendall(head)
        for i in range(len(body)):
            if time.monotonic() - started > max_s:
                return None, reply
            try:
                sock.sendall(body[i:i + 1])
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - started, reply
            if not chunk:
                return time.monotonic() - started, reply
            reply += chunk
        return None, reply
    finally:
        sock.close()


def test_headers_trickled_byte_by_byte_get_408_and_are_closed(server: tuple[str, Service]) -> None:
    side, service = server
    head = _head(INFER[side], 10)
    seen = trickle(port_of(service), head, gap_s=0.2, max_s=HEADER_TIMEOUT_S + SLACK_S + 5)
    assert seen.closed_after_s is not None, f"{side}: a slow-loris connection was still open: {seen}"
    assert seen.closed_after_s < HEADER_TIMEOUT_S + SLACK_S
    assert seen.sent < len(head)  # cut off before it could finish its headers
    assert seen.reply.startswith(b"HTTP/1.1 408 "), seen.reply
    assert b"request headers not received within 1 s" in seen.reply
    assert b"connection: close" in seen.reply.lower()


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, Service]) -> None:
    side, service = server
    seen = trickle(port_of(service), b"", gap_s=0.1, max_s=HEADER_TIMEOUT_S + SLACK_S + 5)
    assert seen.closed_after_s is not None and seen.closed_after_s < HEADER_TIMEOUT_S + SLACK_S, side
    assert seen.reply == b""  # nothing was asked, so nothing is answered


def test_body_trickled_byte_by_byte_gets_408_and_is_closed(server: tuple[str, Service]) -> None:
    side, service = server
    body = b"x" * 1000
    closed_after_s, reply = _send_head_then_trickle(port_of(service), _head(INFER[side], len(body)), body,
                                                    max_s=BODY_TIMEOUT_S + UNREAD_BODY_LINGER_S + SLACK_S + 5)
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert b"request body not received within 1 s" in reply and b"of 1000 arrived" in reply
    assert closed_after_s is not None and closed_after_s < BODY_TIMEOUT_S + UNREAD_BODY_LINGER_S + SLACK_S


def test_body_still_trickling_after_an_early_413_is_cut_off(server: tuple[str, Service]) -> None:
    side, service = server
    closed_after_s, reply = _send_head_then_trickle(port_of(service), _head(INFER[side], 10**9), b"x" * 1000,
                                                    max_s=UNREAD_BODY_LINGER_S + SLACK_S + 5)
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    assert closed_after_s is not None and closed_after_s < UNREAD_BODY_LINGER_S + SLACK_S


def test_client_vanishing_mid_body_is_not_a_server_error(server: tuple[str, Service]) -> None:
    side, service = server
    with socket.create_connection(("127.0.0.1", port_of(service)), timeout=5) as sock:
        sock.sendall(_head(INFER[side], 100) + b"x" * 40)
    time.sleep(0.5)  # let the server notice the disconnect and log whatever it logs
    assert "Traceback" not in service.log_tail(100_000), service.log_tail()
    metrics = httpx.get(f"{service.url}/metrics", timeout=5).text
    assert 'edgecloud_model_requests_total{code="500"' not in metrics


def test_others_are_served_while_slow_clients_hold_connections(server: tuple[str, Service]) -> None:
    side, service = server
    held = []
    try:
        for _ in range(20):  # each holds a connection with half a request line
            sock = socket.create_connection(("127.0.0.1", port_of(service)), timeout=5)
            sock.sendall(b"POST /v2/mo")
            held.append(sock)
        body, headers = encode_request({"input": np.zeros((2, 1, 8, 8), dtype=np.uint8)})
        started = time.monotonic()
        reply = httpx.post(f"{service.url}{INFER[side]}", content=body, headers=headers, timeout=10)
        assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < HEADER_TIMEOUT_S  # not queued behind the slow ones
    finally:
        for sock in held:
            sock.close()


def test_oversized_request_headers_are_refused_and_closed(server: tuple[str, Service]) -> None:
    side, service = server
    head = (f"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * (1 << 20)}\r\n\r\n").encode()
    reply = b""
    with socket.create_connection(("127.0.0.1", port_of(service)), timeout=10) as sock:
        # The server answers 400 and closes before taking the whole megabyte; closing on unread bytes
        # makes the kernel reset the connection, which may destroy the 400 before we read it.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(head)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431 "), (side, reply[:200])  # never served
    assert httpx.get(f"{service.url}/v2/health/live", timeout=10).status_code == 200  # and it serves on
