"""GET /metrics: Prometheus text exposition of this agent's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from edge_agent.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(content=metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
