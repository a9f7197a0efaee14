"""The documented POST /v2/models/{name}[/versions/{v}]/infer routes: the OpenAPI schema of inference.

A running server answers these requests in serving/fastpath.py, ahead of the FastAPI app, with the
same function these routes call; the routes are what the OpenAPI schema shows (the raw body and
headers inference reads, its answers and errors) to clients, the docs and the schemathesis fuzz tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from serving.api.deps import RuntimeDep, require_token
from serving.fastpath import infer_answer
from serving.openapi import infer_openapi
from serving.state import Runtime
from shared.oip import ErrorResponse

router = APIRouter(prefix="/v2/models", tags=["inference"], dependencies=[Depends(require_token)])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 408, 413, 415, 422, 503, 504)}
_OPENAPI = infer_openapi(deadline_header=True)  # the raw body and headers infer reads, for clients and fuzzers


async def infer_response(runtime: Runtime, model_name: str, model_version: str | None, request: Request
                         ) -> Response:
    # A running server answers infer requests in the fast path (ahead of these routes); an app used
    # without it (e.g. mounted under another) answers here, the same way.
    status, headers, body = await infer_answer(runtime, request.scope, request.receive, model_name, model_version)
    return Response(content=body, status_code=status, headers=headers)


@router.post("/{model_name}/infer", response_class=Response, responses=_ERRORS, openapi_extra=_OPENAPI)
async def infer(model_name: str, request: Request, runtime: RuntimeDep) -> Response:
    return await infer_response(runtime, model_name, None, request)


@router.post("/{model_name}/versions/{model_version}/infer", response_class=Response, responses=_ERRORS,
             openapi_extra=_OPENAPI)
async def infer_version(model_name: str, model_version: str, request: Request, runtime: RuntimeDep) -> Response:
    return await infer_response(runtime, model_name, model_version, request)
