"""Server-level OIP endpoints: liveness, readiness (every hosted model ready), server metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.api.deps import RuntimeDep
from shared.oip import LiveResponse, ReadyResponse, ServerMetadata

router = APIRouter(prefix="/v2", tags=["health"])

EXTENSIONS = ["binary_tensor_data", "model_repository"]


def package_version() -> str:
    try:
        return version("edgecloud")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/health/live")
async def live() -> LiveResponse:
    return LiveResponse(live=True)


@router.get("/health/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(runtime: RuntimeDep) -> JSONResponse:
    is_ready = runtime.registry.ready
    return JSONResponse(ReadyResponse(ready=is_ready).model_dump(), status_code=200 if is_ready else 503)


@router.get("")
async def server_metadata(runtime: RuntimeDep) -> ServerMetadata:
    return ServerMetadata(name=runtime.server_name, version=package_version(), extensions=EXTENSIONS)
