"""POST /v2/models/{name}[/versions/{v}]/infer as plain ASGI, ahead of everything the FastAPI app does.

Inference is the one route whose per-request cost matters: with 1-sample offloads, every
microsecond of framework work per request is taken from the model's compute. A py-spy profile of a
1-sample load (tiny teacher, so the framework dominates) put about a quarter of the server's time in
the FastAPI/Starlette layers around the endpoint (error, telemetry, body-limit, exception and exit-
stack middlewares, routing). This path skips them: it reads the body from `receive`, decodes,
computes, encodes and answers itself, and counts and times the request on the way out. The app
(`serving.app.ServingApp`) dispatches here before FastAPI's own `__call__`, whose per-request
telemetry check reads the environment several times. Every other
request (health, metadata, repository, metrics, the docs) goes to the FastAPI app unchanged, and
the FastAPI infer routes stay there too, for the OpenAPI schema clients and fuzzers read.

Errors take the same exception -> status map as the app's handlers (`serving.errors.answer_for`),
so an answer is the same whichever path served it.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.types import Receive, Scope, Send

from serving.auth import check_token
from serving.batcher import ComputeError
from serving.errors import answer_for
from serving.http import receive_body
from serving.state import Runtime
from shared.oip import (
    LOAD_HEADER,
    decode_request,
    encode_response,
    format_load,
    parse_deadline_ms,
    resolve_outputs,
)

logger = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"
"""Requests for a model the server does not host are counted under this label, so a client cannot grow
the series without bound by inventing names."""
_PREFIX = "/v2/models/"
_SUFFIX = "/infer"


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(model, version) of an infer path, else None."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX):-len(_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


def route_path(scope: Scope) -> str:
    """The path below the app's mount point: ASGI servers that mount an app under a prefix (Ray Serve's
    route_prefix, a path-routing proxy) keep the prefix in `path` and name it in `root_path`."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def fast_target(scope: Scope) -> tuple[str, str | None] | None:
    """(model, version) when this ASGI request is an infer request the fast path answers, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return infer_target(route_path(scope))


class InferFastPath:
    """Answers infer requests (`fast_target` not None) without the framework's layers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send, target: tuple[str, str | None]) -> None:
        started = time.perf_counter()
        name, version = target
        try:
            status, headers, body = await infer_answer(self.runtime, scope, receive, name, version)
        except Exception as exc:  # the service boundary: every failure becomes an answer that names it
            status, message, extra = answer_for(exc)
            if status == 500 and not isinstance(exc, ComputeError):
                logger.error("unhandled error on POST %s", scope["path"], exc_info=exc)
            else:
                logger.debug("POST %s answered %d: %s", scope["path"], status, message)
            body = json.dumps({"error": message}).encode()
            headers = {"content-type": "application/json", **{k.lower(): v for k, v in extra.items()}}
        raw_headers = [(b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        hosted = name in self.runtime.registry
        self.runtime.metrics.answered(name if hosted else UNKNOWN_MODEL, status,
                                      time.perf_counter() - started if hosted else None)


async def infer_answer(runtime: Runtime, scope: Scope, receive: Receive, name: str, version: str | None
                       ) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one infer request; raises what `answer_for` maps to an error answer."""
    arrived = time.perf_counter()
    settings = runtime.settings
    # A dict, not Starlette's Headers: that one decodes and scans the raw list on every lookup, and a
    # request is looked up five times. ASGI names are lower-case already; reversed, so the first of a
    # repeated header wins, as in Headers.
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in reversed(scope["headers"])}
    check_token(headers, runtime.token)
    runtime.lookup(name, version)  # an unknown model is a 404 before any body is read
    body = await receive_body(receive, headers, max_bytes=settings.max_body_bytes,
                              timeout_s=settings.body_timeout_s)
    infer_request, tensors = decode_request(body, headers, max_bytes=settings.max_body_bytes)
    # Looked up again after the last await before the model takes the request: a hot swap that lands
    # while the body is arriving routes this request to the new model, and the old one, gone from the
    # registry, can retire as soon as the requests it already took are answered.
    model = runtime.lookup(name, version)
    names, binary = resolve_outputs(infer_request, model.output_names)
    # The client's budget counts from when it sent the request; we only know our arrival time, so
    # network time on the way in is not subtracted: an approximation that errs towards computing.
    deadline_ms = parse_deadline_ms(headers)
    timeout_s = settings.request_timeout_s if deadline_ms is None else min(settings.request_timeout_s,
                                                                            deadline_ms / 1000.0)
    outputs = await model.infer(tensors, timeout_s=timeout_s, parameters=infer_request.parameters)
    content, out_headers = encode_response(model.name, {n: outputs[n] for n in names}, binary=binary,
                                           request_id=infer_request.id)
    # The model's load rides on every answer, so clients that orchestrate (orchestration/) learn it
    # without polling /metrics.
    depth, service_s = model.load()
    out_headers[LOAD_HEADER] = format_load(depth=depth, service_ms=service_s * 1000.0,
                                           server_ms=(time.perf_counter() - arrived) * 1000.0)
    return 200, out_headers, content
