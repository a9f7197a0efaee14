"""Read a request body under a byte limit and a time limit, straight from the ASGI `receive` channel.

The byte limit refuses early (413) when Content-Length already says too much; the time limit (408)
stops a slow-loris client from holding a request open by trickling its body a byte at a time, which
uvicorn itself never times out. Every server of the runtime reads its bodies here: the infer fast
path (serving/fastpath.py) with the scope's headers, the Starlette routes through `read_body`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.requests import Request
from starlette.types import Receive

from shared.oip import ProtocolError


def check_body_headers(headers: Mapping[str, str], *, max_bytes: int) -> str | None:
    """The declared Content-Length (None when chunked), after refusing what cannot be read (415/400/413)."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed",
                            status_code=415)
    declared = headers.get("content-length")
    if declared is not None:
        if not (declared.strip().isascii() and declared.strip().isdigit()):  # "²".isdigit() is true
            raise ProtocolError(f"Content-Length must be a non-negative integer, got {declared!r}")
        if int(declared) > max_bytes:
            raise ProtocolError(f"body of {int(declared)} bytes exceeds the limit of {max_bytes}",
                                status_code=413)
    return declared


async def receive_body(receive: Receive, headers: Mapping[str, str], *, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or ProtocolError: 413 before reading it all when it is larger than `max_bytes`,
    408 when it has not all arrived `timeout_s` after the headers, 400 when the client went away."""
    declared = check_body_headers(headers, max_bytes=max_bytes)
    chunks: list[bytes] = []
    received = 0
    try:
        # One deadline for the whole body, not per chunk: a per-chunk idle timeout is reset by every
        # trickled byte, which is exactly what a slow-loris client sends.
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    # The client's fault, not a server error: no traceback, no 500 in the metrics.
                    raise ProtocolError(f"client disconnected after {received} bytes of the body")
                chunk = message.get("body", b"")
                received += len(chunk)
                # Chunked uploads have no Content-Length: count as we go and stop at the limit.
                if received > max_bytes:
                    raise ProtocolError(f"body exceeds the limit of {max_bytes} bytes", status_code=413)
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        expected = f"of {declared.strip()} " if declared is not None else ""
        raise ProtocolError(f"request body not received within {timeout_s:g} s: {received} bytes {expected}"
                            "arrived", status_code=408) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, *, max_bytes: int, timeout_s: float) -> bytes:
    """`receive_body` for a Starlette request (the repository routes)."""
    return await receive_body(request.receive, request.headers, max_bytes=max_bytes, timeout_s=timeout_s)
