"""Run an app under uvicorn with the connection limits uvicorn lacks: a header timeout and a bounded linger.

uvicorn (h11) closes a keep-alive connection that idles between requests, but nothing else: a
client that opens a connection and sends its request line and headers one byte every few seconds
(slow-loris) holds the connection, and a task, for as long as it likes, and so does a client that
keeps trickling a body the app already answered (an early 413 or 408). `guarded_h11` adds both:

- header timeout: a request's line and headers must be complete `header_timeout_s` after the
  connection opened or the previous response ended; else the client gets a 408 (or, if it sent
  nothing at all, just a close), like nginx's `client_header_timeout`.
- unread-body linger: when a response is sent before the request body was read to the end, the
  connection is closed `UNREAD_BODY_LINGER_S` later, whatever the client still sends.

The body itself is time-limited by the apps (`read_body`, `body_timeout_s`, 408), which know when
they start reading. Used by `edgecloud cloud serve` and `edgecloud edge serve`; an app started with
plain `uvicorn --factory ...` has the body timeout but not these two.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

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


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the header timeout and the unread-body linger (module docstring)."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._sync_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._linger_timer = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._sync_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next cycle when both sides are done
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            # Answered before the body was read to the end: the connection cannot be reused until the
            # client finishes sending, and it need not ever finish.
            cycle = self.cycle
            self._linger_timer = self.loop.call_later(UNREAD_BODY_LINGER_S, self._close_unread, cycle)
        self._sync_header_timer()

    def _sync_header_timer(self) -> None:
        """Armed while a request's headers are awaited, never re-armed by the bytes that trickle in."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)
        elif not waiting and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial, _ = self.conn.trailing_data
        if partial:
            # Part of a request arrived: tell the client why. A connection that sent nothing (an idle
            # keep-alive one) is closed without a word, so that a request racing the close is not
            # answered with a 408 meant for nobody.
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
            logger.warning("%s: closing connection, request headers incomplete after %.1f s (%d bytes)",
                           peer, self.header_timeout_s, len(partial))
            self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()

    def _close_unread(self, cycle: Any) -> None:
        self._linger_timer = None
        if self.cycle is cycle and self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()


def guarded_h11(*, header_timeout_s: float) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol class with this header timeout (uvicorn instantiates the class per connection)."""
    if not header_timeout_s > 0:
        raise ValueError(f"header_timeout_s must be > 0, got {header_timeout_s!r}")
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": float(header_timeout_s)})


def serve(app: Any, *, host: str, port: int, log_level: str, access_log: bool, header_timeout_s: float,
          ssl_certfile: Path | None = None, ssl_keyfile: Path | None = None) -> None:
    """uvicorn.run with the guarded protocol, and TLS when a certificate and key are given."""
    uvicorn.run(app, host=host, port=port, http=guarded_h11(header_timeout_s=header_timeout_s),
                # log_config=None: uvicorn's lines go through the root logger the command set up.
                log_config=None, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=10,
                ssl_certfile=str(ssl_certfile) if ssl_certfile is not None else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile is not None else None)
