"""Dependencies the routes declare; everything comes from app.state, filled by create_app and lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from edge_agent.agent import EdgeAgent
from edge_agent.metrics import EdgeMetrics
from edge_agent.settings import EdgeSettings


class NotReadyError(Exception):
    """The agent is still loading (or shutting down); answered with 503."""


async def get_app_settings(request: Request) -> EdgeSettings:
    return request.app.state.settings


async def get_metrics(request: Request) -> EdgeMetrics:
    return request.app.state.metrics


async def get_agent(request: Request) -> EdgeAgent:
    agent: EdgeAgent | None = request.app.state.agent
    if agent is None:
        raise NotReadyError("the edge agent is not ready yet (bundle still loading)")
    return agent


async def get_optional_agent(request: Request) -> EdgeAgent | None:
    return request.app.state.agent


SettingsDep = Annotated[EdgeSettings, Depends(get_app_settings)]
MetricsDep = Annotated[EdgeMetrics, Depends(get_metrics)]
AgentDep = Annotated[EdgeAgent, Depends(get_agent)]
OptionalAgentDep = Annotated[EdgeAgent | None, Depends(get_optional_agent)]
