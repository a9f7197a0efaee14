"""bench/_closed_loop.py counts what arrived in its window and times what it sent, against a real socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from _closed_loop import closed_loop


@contextlib.asynccontextmanager
async def http_server(*, status: int, delay_s: float, paths: list[str] | None = None,
                      prefix: str = "") -> AsyncIterator[str]:
    """A keep-alive HTTP/1.1 server that answers every POST with `status` after `delay_s`, noting each request's
    path in `paths`; its URL is under `prefix` (e.g. Ray Serve's route prefix)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if paths is not None:
                    paths.append(head.split(b" ", 2)[1].decode())
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                await asyncio.sleep(delay_s)
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}{prefix}/v2/models/m/infer"


def test_a_slow_server_bounds_throughput_and_sets_latency() -> None:
    async def run() -> object:
        async with http_server(status=200, delay_s=0.02) as url:
            return await closed_loop(url, b"x" * 10, {}, concurrency=4, seconds=1.0, warmup_s=0.2,
                                     samples_per_request=3)

    result = asyncio.run(run())
    # 4 clients, each at most one answer per 20 ms, inside a 1 s window: at most 200 answers (a few more
    # can straddle the window's start), and each answer counts 3 samples.
    assert 100 <= result.answered <= 204
    assert result.samples_per_s == pytest.approx(result.answered * 3 / 1.0)
    assert result.failed == 0
    assert result.answered_total > result.answered  # the warm-up's answers are not counted in the window
    assert 20.0 <= result.latency_ms(50) < 200.0
    assert result.latency_ms(99) >= result.latency_ms(50)


def test_non_200_answers_are_failures_not_throughput() -> None:
    async def run() -> object:
        async with http_server(status=503, delay_s=0.005) as url:
            return await closed_loop(url, b"x", {}, concurrency=2, seconds=0.5, warmup_s=0.0, samples_per_request=1)

    result = asyncio.run(run())
    assert result.answered == 0 and result.samples_per_s == 0.0
    assert result.failed > 10
    assert len(result.latencies_s) == 0
    assert result.latency_ms(99) != result.latency_ms(99)  # NaN: no latency for what was never answered


def test_a_refused_connection_is_a_failure() -> None:
    from testbed.services import free_port

    url = f"http://127.0.0.1:{free_port()}/v2/models/m/infer"  # nothing listens there
    result = asyncio.run(closed_loop(url, b"x", {}, concurrency=1, seconds=0.3, warmup_s=0.0,
                                     samples_per_request=1, timeout_s=1.0))
    assert result.answered == 0 and result.failed > 0


def test_a_bad_load_is_refused_by_value() -> None:
    with pytest.raises(ValueError, match="concurrency=0"):
        asyncio.run(closed_loop("http://127.0.0.1:1/v2/x", b"", {}, concurrency=0, seconds=1.0, warmup_s=0.0,
                                samples_per_request=1))


def test_a_path_prefix_before_v2_is_kept() -> None:
    paths: list[str] = []

    async def run() -> object:
        async with http_server(status=200, delay_s=0.0, paths=paths, prefix="/two") as url:
            return await closed_loop(url, b"x", {}, concurrency=1, seconds=0.2, warmup_s=0.0, samples_per_request=1)

    result = asyncio.run(run())
    assert result.answered > 0 and set(paths) == {"/two/v2/models/m/infer"}
