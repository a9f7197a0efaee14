"""Read a request body under a byte limit, refusing early when Content-Length already says too much."""

from __future__ import annotations

from fastapi import Request

from shared.oip import ProtocolError


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The whole body, or ProtocolError 413 as soon as it is known to be larger than `max_bytes`."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed",
                            status_code=415)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ProtocolError(f"Content-Length must be a non-negative integer, got {declared!r}")
        if int(declared) > max_bytes:
            raise ProtocolError(f"body of {int(declared)} bytes exceeds the limit of {max_bytes}", status_code=413)
    parts: list[bytes] = []
    received = 0
    async for chunk in request.stream():  # chunked uploads carry no Content-Length: count as we go
        received += len(chunk)
        if received > max_bytes:
            raise ProtocolError(f"body exceeds the limit of {max_bytes} bytes", status_code=413)
        parts.append(chunk)
    return b"".join(parts)
