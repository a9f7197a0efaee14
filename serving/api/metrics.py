"""GET /metrics: Prometheus text exposition, open without a token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.deps import RuntimeDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(content=runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
