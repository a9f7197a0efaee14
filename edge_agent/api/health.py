"""Server-level OIP endpoints: liveness, readiness (bundle loaded and verified), server metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from edge_agent.deps import OptionalAgentDep
from shared.oip import LiveResponse, ReadyResponse, ServerMetadata

router = APIRouter(prefix="/v2", tags=["health"])

SERVER_NAME = "edgecloud-edge"
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
async def ready(agent: OptionalAgentDep) -> JSONResponse:
    # Ready means the edge can answer: the cloud is optional, a dead cloud only means fallbacks.
    is_ready = agent is not None
    return JSONResponse(ReadyResponse(ready=is_ready).model_dump(), status_code=200 if is_ready else 503)


@router.get("")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=_version(), extensions=EXTENSIONS)
