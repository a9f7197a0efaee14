"""Bearer-token check for the routes a server protects (inference and the repository extension)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from serving.errors import AuthError


def check_token(headers: Mapping[str, str], token: str | None) -> None:
    """`Authorization: Bearer <token>` when a token is configured; constant-time compare; AuthError (401)."""
    if token is None:
        return
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AuthError("wrong bearer token")
