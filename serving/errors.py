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


_UNAVAILABLE = {"Retry-After": RETRY_AFTER_S}


def answer_for(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """(status, message, extra headers) for an exception: the one map every route and the fast path use.

    Anything not listed is a bug: a 500 that names only the exception's type (the log has the rest).
    """
    if isinstance(exc, ProtocolError):
        return exc.status_code, str(exc), {}
    if isinstance(exc, ModelNotFoundError):
        return 404, str(exc.args[0]) if exc.args else "not found", {}
    if isinstance(exc, QueueFullError | BatcherStoppedError | ModelNotReadyError):
        return 503, str(exc), _UNAVAILABLE
    if isinstance(exc, DeadlineExceededError):
        return 504, str(exc), {}
    if isinstance(exc, AuthError):
        return 401, str(exc), {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, ComputeError):
        return 500, str(exc), {}
    if isinstance(exc, ModelLoadError):
        return exc.status_code, str(exc), {}
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, str(exc.detail), dict(exc.headers or {})
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return 422, f"invalid request: {problems or exc}", {}
    return 500, f"internal server error: {type(exc).__name__}", {}


async def _handler(request: Request, exc: Exception) -> JSONResponse:
    status, message, headers = answer_for(exc)
    if status == 500 and not isinstance(exc, ComputeError):
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(status, message, headers or None)


def install_error_handlers(app: FastAPI) -> None:
    for kind in (ProtocolError, ModelNotFoundError, QueueFullError, BatcherStoppedError, ModelNotReadyError,
                 DeadlineExceededError, AuthError, ComputeError, ModelLoadError, StarletteHTTPException,
                 RequestValidationError, Exception):
        app.add_exception_handler(kind, _handler)
