"""The OIP model-repository extension: POST /v2/repository/index and /v2/repository/models/edge/load.

Like inference on the edge, these take no token: the edge API belongs on a trusted network (see
docs/reliability.md). A load only opens bundles whose files match their manifest's sha256.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from edge_agent.api.models import MODEL_NAME, MODEL_VERSION, check_model
from edge_agent.deps import NotReadyError
from edge_agent.repository import EngineRepository, ModelLoadError
from shared.http_body import read_body
from shared.oip import ErrorResponse
from shared.repository import LoadResponse, RepositoryIndexEntry, parse_load_request

MAX_LOAD_BODY_BYTES = 64 * 1024
"""A load body is a small JSON object; anything bigger is refused before it is read."""

router = APIRouter(prefix="/v2/repository", tags=["repository"])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 422, 500, 503)}


def get_repository(request: Request) -> EngineRepository:
    repository: EngineRepository | None = getattr(request.app.state, "repository", None)
    if repository is None:
        raise NotReadyError("the edge agent is not ready yet (bundle still loading)")
    return repository


RepositoryDep = Annotated[EngineRepository, Depends(get_repository)]


@router.post("/index")
async def index(repository: RepositoryDep) -> list[RepositoryIndexEntry]:
    return [RepositoryIndexEntry(name=MODEL_NAME, version=MODEL_VERSION, state="READY",
                                 reason=repository.last_error)]


@router.post("/models/{model_name}/load", response_model=LoadResponse, responses=_ERRORS)
async def load(model_name: str, request: Request, repository: RepositoryDep) -> JSONResponse:
    check_model(model_name)
    bundle = parse_load_request(await read_body(request, max_bytes=MAX_LOAD_BODY_BYTES))
    try:
        engine, load_ms = await repository.load(bundle)
    except ModelLoadError as err:
        return JSONResponse(ErrorResponse(error=f"model {model_name!r} not loaded, the previous bundle keeps "
                                                f"serving: {err}").model_dump(), status_code=err.status_code)
    loaded = LoadResponse(name=MODEL_NAME, version=MODEL_VERSION, bundle=str(repository.bundle),
                          dataset=engine.manifest.dataset, load_ms=load_ms)
    return JSONResponse(loaded.model_dump())
