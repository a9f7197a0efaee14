"""Model metadata and readiness of the one model the edge serves, `edge`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from edge_agent.agent import EdgeAgent
from edge_agent.deps import AgentDep, OptionalAgentDep
from edge_agent.errors import ModelNotFoundError
from shared.oip import ErrorResponse, ModelMetadata, ModelReadyResponse, TensorMetadata

router = APIRouter(prefix="/v2/models", tags=["models"])

MODEL_NAME = "edge"
MODEL_VERSION = "1"
OUTPUTS: tuple[str, ...] = ("label", "source", "fallback_reason")
_NOT_FOUND = {404: {"model": ErrorResponse}}


def check_model(name: str, model_version: str | None = None) -> None:
    """404 unless `name` (and `model_version`, when given) is the edge model."""
    if name != MODEL_NAME:
        raise ModelNotFoundError(f"unknown model {name!r}; this server serves {[MODEL_NAME]}")
    if model_version is not None and model_version != MODEL_VERSION:
        raise ModelNotFoundError(f"model {name!r} has no version {model_version!r}; it has {[MODEL_VERSION]}")


def metadata(agent: EdgeAgent) -> ModelMetadata:
    shape = [-1, *agent.engine.sample_shape]  # (N, C, H, W), N variable
    return ModelMetadata(
        name=MODEL_NAME, versions=[MODEL_VERSION], platform="edgecloud_edge_onnxruntime",
        inputs=[TensorMetadata(name="input", datatype="UINT8", shape=shape)],  # FP32 raw pixels also accepted
        outputs=[TensorMetadata(name="label", datatype="INT64", shape=[-1]),
                 TensorMetadata(name="source", datatype="BYTES", shape=[-1]),
                 TensorMetadata(name="fallback_reason", datatype="BYTES", shape=[-1])],
    )


@router.get("/{model_name}", responses=_NOT_FOUND)
async def model_metadata(model_name: str, agent: AgentDep) -> ModelMetadata:
    check_model(model_name)
    return metadata(agent)


@router.get("/{model_name}/versions/{model_version}", responses=_NOT_FOUND)
async def model_version_metadata(model_name: str, model_version: str, agent: AgentDep) -> ModelMetadata:
    check_model(model_name, model_version)
    return metadata(agent)


def _ready(agent: EdgeAgent | None) -> JSONResponse:
    body = ModelReadyResponse(name=MODEL_NAME, ready=agent is not None).model_dump()
    return JSONResponse(body, status_code=200 if agent is not None else 503)


@router.get("/{model_name}/ready", response_model=ModelReadyResponse, responses=_NOT_FOUND)
async def model_ready(model_name: str, agent: OptionalAgentDep) -> JSONResponse:
    check_model(model_name)
    return _ready(agent)


@router.get("/{model_name}/versions/{model_version}/ready", response_model=ModelReadyResponse,
            responses=_NOT_FOUND)
async def model_version_ready(model_name: str, model_version: str, agent: OptionalAgentDep) -> JSONResponse:
    check_model(model_name, model_version)
    return _ready(agent)
