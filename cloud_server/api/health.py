"""Server-level OIP endpoints: liveness, readiness (teacher loaded and warmed up), server metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cloud_server.deps import RegistryDep
from shared.oip import LiveResponse, ReadyResponse, ServerMetadata

router = APIRouter(prefix="/v2", tags=["health"])

SERVER_NAME = "edgecloud-cloud"
EXTENSIONS = ["binary_tensor_data"]


def _version() -> str:
    try:
        return version("edgecloud")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/health/live")
async def live() -> LiveResponse:
    return LiveResponse(live=True)


@router.get("/health/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(registry: RegistryDep) -> JSONResponse:
    is_ready = registry.ready
    return JSONResponse(ReadyResponse(ready=is_ready).model_dump(), status_code=200 if is_ready else 503)


@router.get("")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=_version(), extensions=EXTENSIONS)
