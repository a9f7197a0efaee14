"""Dependencies the routes declare; everything comes from app.state, built by create_app and lifespan.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, and a
thread hop per dependency per request cost more than the teacher's forward pass on small models.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from cloud_server.metrics import CloudMetrics
from cloud_server.model import ModelRegistry
from cloud_server.settings import CloudSettings


class AuthError(Exception):
    """Missing or wrong bearer token (401). The message never contains either token."""


async def get_app_settings(request: Request) -> CloudSettings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_metrics(request: Request) -> CloudMetrics:
    return request.app.state.metrics


async def get_token(request: Request) -> str | None:
    return request.app.state.token


SettingsDep = Annotated[CloudSettings, Depends(get_app_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
MetricsDep = Annotated[CloudMetrics, Depends(get_metrics)]
TokenDep = Annotated[str | None, Depends(get_token)]


async def require_token(request: Request, token: TokenDep) -> None:
    """`Authorization: Bearer <token>` when a token is configured; constant-time compare."""
    if token is None:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AuthError("wrong bearer token")
