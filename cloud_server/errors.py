"""Exception -> HTTP answer, all as {"error": "..."}: the one service boundary where errors are caught."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_server.batcher import BatcherStoppedError, ComputeError, DeadlineExceededError, QueueFullError
from cloud_server.deps import AuthError
from cloud_server.model import ModelNotFoundError, ModelNotReadyError
from shared.oip import ProtocolError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
"""Seconds a refused client should wait; the queue drains in milliseconds, so one is plenty."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _protocol(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, ProtocolError) else 400
    return _error(status, str(exc))


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return _error(404, str(exc))


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return _error(503, str(exc), {"Retry-After": RETRY_AFTER_S})


async def _deadline(_: Request, exc: Exception) -> JSONResponse:
    return _error(504, str(exc))


async def _unauthorized(_: Request, exc: Exception) -> JSONResponse:
    return _error(401, str(exc), {"WWW-Authenticate": "Bearer"})


async def _compute(_: Request, exc: Exception) -> JSONResponse:
    return _error(500, str(exc))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    headers = exc.headers if isinstance(exc, StarletteHTTPException) else None
    return _error(status, str(detail), headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return _error(422, f"invalid request: {problems or exc}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, f"internal server error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProtocolError, _protocol)
    app.add_exception_handler(ModelNotFoundError, _not_found)
    app.add_exception_handler(QueueFullError, _unavailable)
    app.add_exception_handler(BatcherStoppedError, _unavailable)
    app.add_exception_handler(ModelNotReadyError, _unavailable)
    app.add_exception_handler(DeadlineExceededError, _deadline)
    app.add_exception_handler(AuthError, _unauthorized)
    app.add_exception_handler(ComputeError, _compute)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
