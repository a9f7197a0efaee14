"""POST /v2/models/edge[/versions/1]/infer: raw pixels in; label, source and fallback_reason out.

The OIP request parameter `strategy` (cooperation, edge_only, cloud_only) picks whether the agent
follows its offloader, never offloads or always offloads; the default is cooperation.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from edge_agent.agent import STRATEGIES
from edge_agent.api.models import MODEL_NAME, OUTPUTS, check_model
from edge_agent.deps import AgentDep, SettingsDep
from shared.http_body import read_body
from shared.oip import ErrorResponse, ProtocolError, decode_request, encode_response, resolve_outputs
from shared.oip_openapi import infer_openapi

router = APIRouter(prefix="/v2/models", tags=["inference"])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 408, 413, 415, 422, 503)}
_OPENAPI = infer_openapi(deadline_header=False)  # the raw body and headers _infer reads, for clients and fuzzers


async def _infer(request: Request, agent: AgentDep, settings: SettingsDep) -> Response:
    started = time.perf_counter()
    body = await read_body(request, max_bytes=settings.max_body_bytes)
    infer_request, tensors = decode_request(body, request.headers, max_bytes=settings.max_body_bytes)
    if list(tensors) != ["input"]:
        raise ProtocolError(f"model {MODEL_NAME!r} takes one input named 'input', got {list(tensors)}")
    names, binary = resolve_outputs(infer_request, OUTPUTS)
    strategy = (infer_request.parameters or {}).get("strategy", "cooperation")
    if strategy not in STRATEGIES:
        raise ProtocolError(f"parameter strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    answers = await agent.infer(tensors["input"], strategy=strategy, started=started)
    outputs = {"label": answers.labels, "source": answers.sources, "fallback_reason": answers.reasons}
    content, headers = encode_response(MODEL_NAME, {name: outputs[name] for name in names}, binary=binary,
                                       request_id=infer_request.id)
    return Response(content=content, headers=headers)


@router.post("/{model_name}/infer", response_class=Response, responses=_ERRORS,
             openapi_extra=_OPENAPI)
async def infer(model_name: str, request: Request, agent: AgentDep, settings: SettingsDep) -> Response:
    check_model(model_name)
    return await _infer(request, agent, settings)


@router.post("/{model_name}/versions/{model_version}/infer", response_class=Response, responses=_ERRORS,
             openapi_extra=_OPENAPI)
async def infer_version(model_name: str, model_version: str, request: Request, agent: AgentDep,
                        settings: SettingsDep) -> Response:
    check_model(model_name, model_version)
    return await _infer(request, agent, settings)
