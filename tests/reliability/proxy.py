"""A TCP forwarder between the edge and the cloud that a test can cut, blackhole and restore.

It models the link, not the cloud: `cut()` resets every open connection (RST) and stops listening,
so new connections are refused, as when a route to the host disappears; `blackhole()` keeps
accepting but silently drops every byte both ways, as when packets vanish; `restore()` forwards
again. It runs its own asyncio loop in a daemon thread so the test's loop is free for clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from testbed.services import free_port

T = TypeVar("T")
_CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees a reset and not a polite end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; every control method blocks until it has taken effect."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.dropping = False  # blackhole mode: bytes are read and thrown away
        self.connections = 0   # accepted so far, for the test's own checks
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(_CHUNK):
                if self.dropping:
                    continue
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.dropping:
                await self._pump(reader, writer)  # swallow the request; never answer
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _reset(writer)  # the far side is down: the client sees its connection reset
                return
            self._writers.add(upstream_writer)
            await asyncio.gather(self._pump(reader, upstream_writer), self._pump(upstream_reader, writer))
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._reset_all()

    async def _blackhole(self) -> None:
        self.dropping = True

    async def _restore(self) -> None:
        if self.dropping:
            self.dropping = False
            await self._reset_all()  # connections that swallowed bytes are out of step: drop them
        await self._listen()

    async def _retarget(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        await self._reset_all()

    def cut(self) -> None:
        """Link down: reset every connection and refuse new ones."""
        self._call(self._cut())

    def blackhole(self) -> None:
        """Link silently dropping everything: connections open, nothing ever arrives."""
        self._call(self._blackhole())

    def restore(self) -> None:
        """Link up again."""
        self._call(self._restore())

    def retarget(self, upstream: tuple[str, int]) -> None:
        """Forward new connections to `upstream`; open ones are reset (call it between streams)."""
        self._call(self._retarget(upstream))

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
