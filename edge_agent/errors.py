"""Exception -> HTTP answer, all as {"error": "..."}: the one service boundary where errors are caught."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge_agent.agent import NoCloudError
from edge_agent.deps import NotReadyError
from edge_agent.engine import InputError
from shared.oip import ProtocolError

logger = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    """A model name or version this server does not serve (404)."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _protocol(_: Request, exc: Exception) -> JSONResponse:
    return _error(exc.status_code if isinstance(exc, ProtocolError) else 400, str(exc))


async def _bad_input(_: Request, exc: Exception) -> JSONResponse:
    return _error(400, str(exc))


async def _no_cloud(_: Request, exc: Exception) -> JSONResponse:
    return _error(422, str(exc))


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return _error(404, str(exc.args[0]) if exc.args else "not found")


async def _not_ready(_: Request, exc: Exception) -> JSONResponse:
    return _error(503, str(exc))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))
    return _error(500, str(exc))


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return _error(422, f"invalid request: {problems or exc}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, f"internal server error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProtocolError, _protocol)
    app.add_exception_handler(InputError, _bad_input)
    app.add_exception_handler(NoCloudError, _no_cloud)
    app.add_exception_handler(ModelNotFoundError, _not_found)
    app.add_exception_handler(NotReadyError, _not_ready)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
