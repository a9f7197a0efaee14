"""Run an app under uvicorn with the connection limits uvicorn lacks: a header timeout and a bounded linger.

uvicorn closes a keep-alive connection that idles between requests, but nothing else: a client
that opens a connection and sends its request line and headers one byte every few seconds
(slow-loris) holds the connection, and a task, for as long as it likes, and so does a client that
keeps trickling a body the app already answered (an early 413 or 408). `guarded_httptools` adds both:

- header timeout: a request's line and headers must be complete `header_timeout_s` after the
  connection opened or the previous response ended; else the client gets a 408 (or, if it sent
  nothing at all, just a close), like nginx's `client_header_timeout`.
- unread-body linger: when a response is sent before the request body was read to the end, the
  connection is closed `UNREAD_BODY_LINGER_S` later, whatever the client still sends.

The parser is httptools (llhttp, in C) and the loop uvloop where installed: with 1-sample
requests, parsing and event-loop bookkeeping are a large share of a server's CPU, and both are
several times cheaper in C than uvicorn's pure-Python h11 and asyncio. The body itself is
time-limited by the apps (`serving.http.receive_body`, `body_timeout_s`, 408), which know when they
start reading. Used by every `edgecloud ... serve`; an app started with plain `uvicorn --factory ...`
has the body timeout but not these two.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.oip import KEEPALIVE_S

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
"""Largest request line plus headers accepted (then 431 and closed). llhttp sets no limit of its own, and
h11, which uvicorn used before, refused incomplete heads past 16 KiB."""

UNREAD_BODY_LINGER_S = 2.0
"""Time a client gets to read an early error before its connection is closed under its unread body.

Closing at once with unread bytes in the socket makes the kernel send a reset, which can destroy
the error response before the client reads it; a short linger avoids that and still bounds the
connection.
"""


def _timeout_response(header_timeout_s: float) -> bytes:
    body = json.dumps({"error": f"request headers not received within {header_timeout_s:g} s"}).encode()
    head = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the header timeout and the unread-body linger (module docstring)."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._open_requests = 0  # requests whose headers are complete and whose response is not
        self._partial = False    # some bytes of the next request's head have arrived
        self._head_bytes = 0     # size of the request line and headers parsed so far
        self._rejected = False   # answered 431 and closing: serve nothing more on this connection
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._linger_timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._partial = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        if not self._rejected:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        if not self._rejected:
            super().on_header(name, value)

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES and not self._rejected and not self.transport.is_closing():
            logger.warning("closing connection: request line and headers exceed %d bytes", MAX_HEAD_BYTES)
            body = json.dumps({"error": f"request line and headers exceed {MAX_HEAD_BYTES} bytes"}).encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                 b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()
            self._rejected = True  # the rest of what is buffered is parsed, but nothing more is served

    def data_received(self, data: bytes) -> None:
        if not self._rejected:
            super().data_received(data)

    def on_headers_complete(self) -> None:
        if self._rejected:
            return
        self._partial = False
        self._open_requests += 1
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._open_requests = max(0, self._open_requests - 1)
        cycle = self.cycle
        super().on_response_complete()  # starts a pipelined request, or arms the keep-alive timeout
        if self.transport.is_closing():
            return
        if cycle is not None and cycle.more_body:
            # Answered before the body was read to the end: the connection cannot be reused until the
            # client finishes sending, and it need not ever finish.
            self._linger_timer = self.loop.call_later(UNREAD_BODY_LINGER_S, self._close_unread, cycle)
        if self._open_requests == 0:
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        """Armed while a request's head is awaited, never re-armed by the bytes that trickle in."""
        if self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._open_requests:
            return
        if self._partial:
            # Part of a request arrived: tell the client why. A connection that sent nothing (an idle
            # keep-alive one) is closed without a word, so that a request racing the close is not
            # answered with a 408 meant for nobody.
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
            logger.warning("%s: closing connection, request headers incomplete after %.1f s", peer,
                           self.header_timeout_s)
            self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()

    def _close_unread(self, cycle: Any) -> None:
        self._linger_timer = None
        if cycle.more_body and not self.transport.is_closing():
            self.transport.close()


def guarded_httptools(*, header_timeout_s: float) -> type[GuardedHttpToolsProtocol]:
    """A GuardedHttpToolsProtocol class with this header timeout (uvicorn instantiates it per connection)."""
    if not header_timeout_s > 0:
        raise ValueError(f"header_timeout_s must be > 0, got {header_timeout_s!r}")
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"header_timeout_s": float(header_timeout_s)})


def event_loop() -> str:
    """uvloop where it is installed (the `edge` and `cloud` extras install it), else asyncio."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def serve(app: Any, *, host: str, port: int, log_level: str, access_log: bool, header_timeout_s: float,
          ssl_certfile: Path | None = None, ssl_keyfile: Path | None = None) -> None:
    """uvicorn.run with the guarded protocol and uvloop, and TLS when a certificate and key are given."""
    uvicorn.run(app, host=host, port=port, http=guarded_httptools(header_timeout_s=header_timeout_s), loop=event_loop(),
                # log_config=None: uvicorn's lines go through the root logger the command set up.
                log_config=None, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=10,
                timeout_keep_alive=int(KEEPALIVE_S),
                ssl_certfile=str(ssl_certfile) if ssl_certfile is not None else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile is not None else None)
