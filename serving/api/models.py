"""Model metadata and model readiness; open without a token, like health (they reveal no data)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.api.deps import RuntimeDep
from serving.model import ServedModel
from shared.oip import ErrorResponse, ModelMetadata, ModelReadyResponse

router = APIRouter(prefix="/v2/models", tags=["models"])
_NOT_FOUND = {404: {"model": ErrorResponse}}


@router.get("/{model_name}", responses=_NOT_FOUND)
async def model_metadata(model_name: str, runtime: RuntimeDep) -> ModelMetadata:
    return runtime.lookup(model_name).metadata()


@router.get("/{model_name}/versions/{model_version}", responses=_NOT_FOUND)
async def model_version_metadata(model_name: str, model_version: str, runtime: RuntimeDep) -> ModelMetadata:
    return runtime.lookup(model_name, model_version).metadata()


def _ready(model: ServedModel) -> JSONResponse:
    body = ModelReadyResponse(name=model.name, ready=model.ready).model_dump()
    return JSONResponse(body, status_code=200 if model.ready else 503)


@router.get("/{model_name}/ready", response_model=ModelReadyResponse, responses=_NOT_FOUND)
async def model_ready(model_name: str, runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime.lookup(model_name))


@router.get("/{model_name}/versions/{model_version}/ready", response_model=ModelReadyResponse,
            responses=_NOT_FOUND)
async def model_version_ready(model_name: str, model_version: str, runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime.lookup(model_name, model_version))
