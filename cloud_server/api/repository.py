"""The OIP model-repository extension: POST /v2/repository/index and /v2/repository/models/{name}/load.

Behind the same bearer token as inference, since a load makes the server open files of the caller's
choosing. Unload is not offered: the server always serves exactly one teacher.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from cloud_server.deps import require_token
from cloud_server.repository import ModelLoadError, TeacherRepository
from shared.http_body import read_body
from shared.oip import ErrorResponse
from shared.repository import LoadResponse, RepositoryIndexEntry, parse_load_request

MAX_LOAD_BODY_BYTES = 64 * 1024
"""A load body is a small JSON object; anything bigger is refused before it is read."""

router = APIRouter(prefix="/v2/repository", tags=["repository"], dependencies=[Depends(require_token)])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422, 500)}


async def get_repository(request: Request) -> TeacherRepository:
    return request.app.state.repository


RepositoryDep = Annotated[TeacherRepository, Depends(get_repository)]


@router.post("/index")
async def index(repository: RepositoryDep) -> list[RepositoryIndexEntry]:
    return repository.index()


@router.post("/models/{model_name}/load", response_model=LoadResponse, responses=_ERRORS)
async def load(model_name: str, request: Request, repository: RepositoryDep) -> JSONResponse:
    bundle = parse_load_request(await read_body(request, max_bytes=MAX_LOAD_BODY_BYTES))
    try:
        loaded = await repository.load(model_name, bundle)
    except ModelLoadError as err:
        return JSONResponse(ErrorResponse(error=f"model {model_name!r} not loaded, the previous bundle keeps "
                                                f"serving: {err}").model_dump(), status_code=err.status_code)
    return JSONResponse(loaded.model_dump())
