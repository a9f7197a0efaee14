"""A keep-alive HTTP/1.1 POST client for the load generators in bench/ (load.py, cloud_batching.py)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(Exception):
    """A request that got no complete HTTP answer (refused, reset, closed early, timed out)."""


class KeepAliveConnection:
    """One keep-alive HTTP/1.1 connection for a load-generating client.

    httpx spends about a millisecond of Python per request, which on a small machine makes the
    generator, not the edge, the bottleneck; this sends a request and reads a Content-Length
    answer (all uvicorn sends for these endpoints) with a handful of stream calls instead.
    """

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"the load generator speaks plain http:// only, got {base_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); HttpError when no complete answer came."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                assert self._reader is not None
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                self._writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                                   f"Content-Length: {len(body)}\r\n{head}\r\n".encode("latin-1") + body)
                status_line = await self._reader.readline()
                if not status_line:
                    raise HttpError("RemoteProtocolError: connection closed before an answer")
                status = int(status_line.split(b" ", 2)[1])
                answer_headers: dict[str, str] = {}
                while (line := await self._reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    answer_headers[name.strip().lower()] = value.strip()
                content = await self._reader.readexactly(int(answer_headers.get("content-length", "0")))
        except HttpError:
            self.close()
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
            self.close()
            raise HttpError(f"{type(err).__name__}: {err}") from None
        except TimeoutError:
            self.close()
            raise HttpError(f"ReadTimeout: no answer within {self.timeout_s:g} s") from None
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return status, answer_headers, content

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
