"""POST /v2/models/{name}[/versions/{v}]/infer: JSON or binary tensors in, the model's outputs out.

One handler for every model of every tier: look the model up, read and decode the body, let the
model compute, encode the outputs the request asked for.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.routing import Route

from serving.api.deps import RuntimeDep, require_token
from serving.auth import check_token
from serving.http import read_body
from serving.openapi import infer_openapi
from serving.state import Runtime
from shared.oip import ErrorResponse, decode_request, encode_response, parse_deadline_ms, resolve_outputs

router = APIRouter(prefix="/v2/models", tags=["inference"], dependencies=[Depends(require_token)])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 408, 413, 415, 422, 503, 504)}
_OPENAPI = infer_openapi(deadline_header=True)  # the raw body and headers infer reads, for clients and fuzzers


async def infer_response(runtime: Runtime, model_name: str, model_version: str | None, request: Request
                         ) -> Response:
    settings = runtime.settings
    runtime.lookup(model_name, model_version)  # an unknown model is a 404 before any body is read
    body = await read_body(request, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    infer_request, tensors = decode_request(body, request.headers, max_bytes=settings.max_body_bytes)
    # Looked up again after the last await before the model takes the request: a hot swap that lands
    # while the body is arriving routes this request to the new model, and the old one, gone from the
    # registry, can retire as soon as the requests it already took are answered.
    model = runtime.lookup(model_name, model_version)
    names, binary = resolve_outputs(infer_request, model.output_names)
    # The client's budget counts from when it sent the request; we only know our arrival time, so
    # network time on the way in is not subtracted: an approximation that errs towards computing.
    deadline_ms = parse_deadline_ms(request.headers)
    timeout_s = settings.request_timeout_s if deadline_ms is None else min(settings.request_timeout_s,
                                                                            deadline_ms / 1000.0)
    outputs = await model.infer(tensors, timeout_s=timeout_s, parameters=infer_request.parameters)
    content, headers = encode_response(model.name, {name: outputs[name] for name in names}, binary=binary,
                                       request_id=infer_request.id)
    return Response(content=content, headers=headers)


async def fast_infer(request: Request) -> Response:
    """The infer routes as plain Starlette endpoints: the same checks and answers, less per-request work.

    FastAPI's per-request machinery (dependency solving, exit stacks) cost about as much CPU as the
    endpoint itself in a profile of 1-sample requests, and with 1-sample offloads that per-request
    CPU is what separates served from raw throughput. `install_fast_routes` puts these ahead of the
    FastAPI routes below, which stay for the OpenAPI schema (clients, docs and the schemathesis fuzz
    tests read it); errors still go through the app's exception handlers.
    """
    runtime: Runtime = request.app.state.runtime
    check_token(request, runtime.token)
    params = request.path_params
    return await infer_response(runtime, params["model_name"], params.get("model_version"), request)


def install_fast_routes(app: FastAPI) -> None:
    """Serve POST .../infer with `fast_infer`, ahead of (and so instead of) the documented FastAPI routes."""
    fast = [Route(f"{router.prefix}{path}", fast_infer, methods=["POST"], include_in_schema=False)
            for path in ("/{model_name}/infer", "/{model_name}/versions/{model_version}/infer")]
    app.router.routes[:0] = fast


@router.post("/{model_name}/infer", response_class=Response, responses=_ERRORS, openapi_extra=_OPENAPI)
async def infer(model_name: str, request: Request, runtime: RuntimeDep) -> Response:
    return await infer_response(runtime, model_name, None, request)


@router.post("/{model_name}/versions/{model_version}/infer", response_class=Response, responses=_ERRORS,
             openapi_extra=_OPENAPI)
async def infer_version(model_name: str, model_version: str, request: Request, runtime: RuntimeDep) -> Response:
    return await infer_response(runtime, model_name, model_version, request)
