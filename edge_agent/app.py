"""Assemble the edge app: settings, lifespan (verify the bundle, open the student, connect the cloud client,
reload on SIGHUP), routers, error handlers.

    uvicorn --factory edge_agent.app:create_app                          # settings from EDGECLOUD_*
    edgecloud edge serve --bundle artifacts/mnist --cloud-url http://cloud:8001   # CLI flags on top
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from edge_agent.agent import open_agent
from edge_agent.api import health, infer, metrics, models, repository
from edge_agent.errors import install_error_handlers
from edge_agent.metrics import EdgeMetrics
from edge_agent.repository import EngineRepository
from edge_agent.settings import EdgeSettings, get_settings
from shared.repository import reload_on_sighup

logger = logging.getLogger(__name__)


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    """A new app with its own metrics registry; the bundle is loaded when the lifespan starts."""
    settings = settings if settings is not None else get_settings()
    settings.bearer_token()  # a bad token setting fails here, at start, not on the first offload

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_agent(settings, metrics=app.state.metrics) as agent:
            engines = EngineRepository(agent, settings)
            app.state.agent, app.state.repository = agent, engines
            logger.info("ready: model 'edge' on http://%s:%d, cloud %s, filter %r", settings.host, settings.port,
                        settings.base_cloud_url or "none (edge-only)", agent.engine.filter)
            try:
                with reload_on_sighup(engines.load, what=f"bundle {settings.bundle}"):
                    yield
            finally:
                app.state.agent = app.state.repository = None

    app = FastAPI(title="edgecloud edge", summary="The student and the offloader behind an Open Inference "
                  "Protocol endpoint, offloading complex samples to the cloud", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = EdgeMetrics(ratio_window=settings.ratio_window)
    app.state.agent = None
    app.state.repository = None
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(infer.router)
    app.include_router(metrics.router)
    app.include_router(repository.router)
    install_error_handlers(app)
    return app
