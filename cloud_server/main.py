"""Assemble the cloud app: settings, lifespan (load + warm up the teacher, SIGHUP reload), routers, error handlers.

    uvicorn --factory cloud_server.main:create_app     # settings from EDGECLOUD_* variables
    edgecloud cloud serve --bundle artifacts/mnist     # the same, with CLI flags on top
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloud_server.api import health, infer, metrics, models, repository
from cloud_server.errors import install_error_handlers
from cloud_server.loader import BackendLoader, default_backend_loader, load_teacher
from cloud_server.metrics import CloudMetrics
from cloud_server.middleware import InferCounterMiddleware
from cloud_server.model import ModelRegistry
from cloud_server.repository import TeacherRepository
from cloud_server.settings import CloudSettings, get_settings
from shared.repository import reload_on_sighup
from shared.settings import read_token

logger = logging.getLogger(__name__)


def create_app(settings: CloudSettings | None = None, *,
               backend_loader: BackendLoader = default_backend_loader) -> FastAPI:
    """A new app with its own registry and metrics; the teacher is loaded when the lifespan starts."""
    settings = settings if settings is not None else get_settings()
    token = read_token(settings.token, settings.token_file)  # a bad token setting fails here, at start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry: ModelRegistry = app.state.registry
        model = load_teacher(settings, app.state.metrics, backend_loader=backend_loader)
        await model.batcher.start()
        registry.add(model)
        logger.info("ready: model %r on http://%s:%d (auth %s)", model.name, settings.host, settings.port,
                    "on" if token else "off")
        teachers: TeacherRepository = app.state.repository
        try:
            with reload_on_sighup(lambda: teachers.load(model.name), what=f"bundle {settings.bundle}"):
                yield
        finally:
            await registry.close()

    app = FastAPI(title="edgecloud cloud", summary="The teacher behind an Open Inference Protocol endpoint",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.token = token
    app.state.registry = ModelRegistry()
    app.state.metrics = CloudMetrics()
    app.state.repository = TeacherRepository(app.state.registry, settings, app.state.metrics,
                                             backend_loader=backend_loader)
    app.include_router(health.router)
    app.include_router(models.router)
    infer.install_fast_routes(app)
    app.include_router(infer.router)
    app.include_router(metrics.router)
    app.include_router(repository.router)
    install_error_handlers(app)
    app.add_middleware(InferCounterMiddleware, metrics=app.state.metrics)
    return app
