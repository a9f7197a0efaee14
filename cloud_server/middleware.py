"""Count every infer request by the status code it was answered with (edgecloud_cloud_requests_total)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_server.metrics import CloudMetrics


class InferCounterMiddleware:
    """Pure ASGI, so it sees the status of every answer, including the error handlers' answers."""

    def __init__(self, app: ASGIApp, *, metrics: CloudMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/infer"):
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering, the outermost handler answers 500

        async def send_and_count(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            self.metrics.requests.labels(code=str(status)).inc()
