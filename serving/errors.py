"""Exception -> HTTP answer, all as {"error": "..."}: the one service boundary where errors are caught.

Every server of the runtime (edge, edge server, cloud) answers the same failure the same way.
Errors raised by the protocol codec and input checks (`shared.oip.ProtocolError` and its
subclasses) carry their own 4xx status.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.batcher import BatcherStoppedError, ComputeError, DeadlineExceededError, QueueFullError
from shared.oip import ProtocolError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
"""Seconds a refused client should wait; a queue drains in milliseconds, so one is plenty."""


class ModelNotFoundError(LookupError):
    """No model (or version) of that name on this server (404); the message lists what is served."""


class ModelNotReadyError(RuntimeError):
    """The model is loaded but not (or no longer) ready, or the server is still starting (503)."""


class AuthError(Exception):
    """Missing or wrong bearer token (401). The message never contains either token."""


class ModelLoadError(Exception):
    """A load or unload that changed nothing; `status_code` is the HTTP answer, the old model serves on."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _protocol(_: Request, exc: Exception) -> JSONResponse:
    return error_response(exc.status_code if isinstance(exc, ProtocolError) else 400, str(exc))


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, str(exc.args[0]) if exc.args else "not found")


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return error_response(503, str(exc), {"Retry-After": RETRY_AFTER_S})


async def _deadline(_: Request, exc: Exception) -> JSONResponse:
    return error_response(504, str(exc))


async def _unauthorized(_: Request, exc: Exception) -> JSONResponse:
    return error_response(401, str(exc), {"WWW-Authenticate": "Bearer"})


async def _compute(_: Request, exc: Exception) -> JSONResponse:
    return error_response(500, str(exc))


async def _load(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, ModelLoadError) else 500
    return error_response(status, str(exc))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    headers = exc.headers if isinstance(exc, StarletteHTTPException) else None
    return error_response(status, str(detail), headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return error_response(422, f"invalid request: {problems or exc}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal server error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProtocolError, _protocol)
    app.add_exception_handler(ModelNotFoundError, _not_found)
    app.add_exception_handler(QueueFullError, _unavailable)
    app.add_exception_handler(BatcherStoppedError, _unavailable)
    app.add_exception_handler(ModelNotReadyError, _unavailable)
    app.add_exception_handler(DeadlineExceededError, _deadline)
    app.add_exception_handler(AuthError, _unauthorized)
    app.add_exception_handler(ComputeError, _compute)
    app.add_exception_handler(ModelLoadError, _load)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
