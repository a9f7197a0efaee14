"""Read a request body under a byte limit and a time limit.

The byte limit refuses early (413) when Content-Length already says too much; the time limit (408)
stops a slow-loris client from holding a request open by trickling its body a byte at a time, which
uvicorn itself never times out. Every server of the runtime reads its bodies here.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from shared.oip import ProtocolError


async def read_body(request: Request, *, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or ProtocolError: 413 before reading it all when it is larger than `max_bytes`,
    408 when it has not all arrived `timeout_s` after the headers."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed",
                            status_code=415)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.strip().isascii() and declared.strip().isdigit()):  # "²".isdigit() is true
            raise ProtocolError(f"Content-Length must be a non-negative integer, got {declared!r}")
        if int(declared) > max_bytes:
            raise ProtocolError(f"body of {int(declared)} bytes exceeds the limit of {max_bytes}",
                                status_code=413)
    limit_s = timeout_s
    chunks: list[bytes] = []
    received = 0
    try:
        # One deadline for the whole body, not per chunk: a per-chunk idle timeout is reset by every
        # trickled byte, which is exactly what a slow-loris client sends.
        async with asyncio.timeout(limit_s):
            # Chunked uploads have no Content-Length: count as we go and stop at the limit.
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise ProtocolError(f"body exceeds the limit of {max_bytes} bytes", status_code=413)
                chunks.append(chunk)
    except TimeoutError:
        expected = f"of {declared.strip()} " if declared is not None else ""
        raise ProtocolError(f"request body not received within {limit_s:g} s: {received} bytes {expected}"
                            "arrived", status_code=408) from None
    except ClientDisconnect:
        # The client's fault, not a server error: no traceback, no 500 in the metrics (nobody reads the answer).
        raise ProtocolError(f"client disconnected after {received} bytes of the body") from None
    return b"".join(chunks)
