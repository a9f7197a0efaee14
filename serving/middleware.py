"""Count every infer request by model and the status it was answered with, and time it.

Pure ASGI, so it sees the status of every answer, including the error handlers' answers. Only
models the server hosts get a label of their own: a request for a made-up name is counted under
"_unknown", so a client cannot grow the series without bound.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.metrics import ServerMetrics
from serving.registry import ModelRegistry

UNKNOWN_MODEL = "_unknown"
_PREFIX = "/v2/models/"


def model_of(path: str) -> str | None:
    """The model name of an infer path (`/v2/models/{name}[/versions/{v}]/infer`), else None."""
    if not (path.startswith(_PREFIX) and path.endswith("/infer")):
        return None
    return path[len(_PREFIX):].split("/", 1)[0]


class InferMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, registry: ModelRegistry) -> None:
        self.app = app
        self.metrics = metrics
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = model_of(scope["path"]) if scope["type"] == "http" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, the outermost handler answers 500

        async def send_and_count(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            label = model if model in self.registry else UNKNOWN_MODEL
            self.metrics.requests.labels(model=label, code=str(status)).inc()
            if label != UNKNOWN_MODEL:
                self.metrics.request_seconds.labels(model=label).observe(time.perf_counter() - started)
