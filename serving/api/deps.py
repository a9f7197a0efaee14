"""What the routes need, from app.state (filled by serving.app.create_server)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.auth import check_token
from serving.state import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def require_token(request: Request, runtime: RuntimeDep) -> None:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, and a thread hop per
    # request cost more than a small model's forward pass.
    check_token(request.headers, runtime.token)
