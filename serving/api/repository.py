"""The OIP model-repository extension: POST /v2/repository/index and /v2/repository/models/{name}/(un)load.

Behind the server's bearer token (when it has one), like inference: a load makes the server open
files of the caller's choosing. A load only opens bundles whose files match their manifest's sha256.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from serving.api.deps import RuntimeDep, require_token
from serving.errors import ModelLoadError
from serving.http import read_body
from shared.oip import ErrorResponse
from shared.repository import LoadResponse, RepositoryIndexEntry, UnloadResponse, parse_load_request

MAX_LOAD_BODY_BYTES = 64 * 1024
"""A load body is a small JSON object; anything bigger is refused before it is read."""

router = APIRouter(prefix="/v2/repository", tags=["repository"], dependencies=[Depends(require_token)])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422, 500, 503)}


@router.post("/index")
async def index(runtime: RuntimeDep) -> list[RepositoryIndexEntry]:
    return runtime.repository.index()


@router.post("/models/{model_name}/load", response_model=LoadResponse, responses=_ERRORS)
async def load(model_name: str, request: Request, runtime: RuntimeDep) -> JSONResponse:
    body = await read_body(request, max_bytes=MAX_LOAD_BODY_BYTES, timeout_s=runtime.settings.body_timeout_s)
    bundle = parse_load_request(body)
    try:
        loaded = await runtime.repository.load(model_name, bundle)
    except ModelLoadError as err:
        return JSONResponse(ErrorResponse(error=str(err)).model_dump(), status_code=err.status_code)
    return JSONResponse(loaded.model_dump())


@router.post("/models/{model_name}/unload", response_model=UnloadResponse, responses=_ERRORS)
async def unload(model_name: str, runtime: RuntimeDep) -> UnloadResponse:
    return await runtime.repository.unload(model_name)
