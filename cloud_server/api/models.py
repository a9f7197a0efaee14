"""Model metadata and model readiness; open without a token, like health (they reveal no data)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cloud_server.deps import RegistryDep
from cloud_server.model import ModelNotFoundError, ServedModel
from shared.oip import ErrorResponse, ModelMetadata, ModelReadyResponse

router = APIRouter(prefix="/v2/models", tags=["models"])
_NOT_FOUND = {404: {"model": ErrorResponse}}


def _versioned(registry: RegistryDep, name: str, model_version: str | None) -> ServedModel:
    model = registry.get(name)
    if model_version is not None and model_version != model.version:
        raise ModelNotFoundError(f"model {name!r} has no version {model_version!r}; it has {[model.version]}")
    return model


@router.get("/{model_name}", responses=_NOT_FOUND)
async def model_metadata(model_name: str, registry: RegistryDep) -> ModelMetadata:
    return _versioned(registry, model_name, None).metadata()


@router.get("/{model_name}/versions/{model_version}", responses=_NOT_FOUND)
async def model_version_metadata(model_name: str, model_version: str, registry: RegistryDep) -> ModelMetadata:
    return _versioned(registry, model_name, model_version).metadata()


def _ready(model: ServedModel) -> JSONResponse:
    body = ModelReadyResponse(name=model.name, ready=model.ready).model_dump()
    return JSONResponse(body, status_code=200 if model.ready else 503)


@router.get("/{model_name}/ready", response_model=ModelReadyResponse, responses=_NOT_FOUND)
async def model_ready(model_name: str, registry: RegistryDep) -> JSONResponse:
    return _ready(_versioned(registry, model_name, None))


@router.get("/{model_name}/versions/{model_version}/ready", response_model=ModelReadyResponse,
            responses=_NOT_FOUND)
async def model_version_ready(model_name: str, model_version: str, registry: RegistryDep) -> JSONResponse:
    return _ready(_versioned(registry, model_name, model_version))
