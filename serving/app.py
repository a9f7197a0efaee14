"""Assemble one server of the runtime: registry, repository, metrics, routes, error handlers, lifespan.

A service is a composition: it says which models it hosts from its bundle and how to build one
(a `Hosting`), and optionally holds resources of its own for the server's lifetime (the edge's
client to the next tier). Everything else, the Open Inference Protocol routes, the repository
extension, health, metrics, auth, limits and the SIGHUP reload, is the same for every tier:

    app = create_server(settings, hosting=Hosting(...), server_name="edgecloud-cloud", token=token)

A third tier (an edge server between devices and the cloud) is another server of this runtime
hosting other models; it needs no new package.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from serving.api import health, infer, models, repository
from serving.api import metrics as metrics_api
from serving.errors import install_error_handlers
from serving.fastpath import InferFastPath, fast_target
from serving.metrics import ServerMetrics
from serving.registry import ModelRegistry
from serving.repository import ModelLoader, ModelRepository, reload_on_sighup
from serving.settings import ServerSettings
from serving.state import Runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hosting:
    """Which models a server hosts and how it builds one."""

    source: Path
    """the configured bundle: every model is loaded from it at start, and reloaded from it on SIGHUP"""
    models: Callable[[Path], list[str]]
    """the models of a bundle this server hosts (all loaded at start, listed by the repository index)"""
    loader: ModelLoader
    """builds one model from a bundle (blocking: verify, open, warm up)"""
    dataset: Callable[[Path], str] = lambda _: ""
    """the dataset a bundle was built for, for the repository's load answer"""


Resources = Callable[[Runtime], AbstractAsyncContextManager[object]]
"""Held open for the server's lifetime, entered before the models are loaded (e.g. a client to the next tier)."""


class ServingApp(FastAPI):
    """The FastAPI app of one server, with infer requests answered by `fast_path` before any of its layers."""

    def __init__(self, fast_path: InferFastPath, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_path = fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = fast_target(scope)
        if target is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast_path(scope, receive, send, target)


def create_server(settings: ServerSettings, *, hosting: Hosting, server_name: str, token: str | None = None,
                  metrics: ServerMetrics | None = None, title: str = "edgecloud", summary: str = "",
                  resources: Resources | None = None) -> FastAPI:
    """A new app with its own registry; its models are loaded when the lifespan starts.

    `metrics` is the server's Prometheus registry when the service's models report into it too
    (their batchers do: the loader binds them with `metrics.for_model(name)`); else a fresh one.
    """
    registry = ModelRegistry()
    server_metrics = metrics if metrics is not None else ServerMetrics()
    model_repository = ModelRepository(registry, loader=hosting.loader, source=hosting.source,
                                       available=hosting.models, grace_s=settings.request_timeout_s,
                                       metrics=server_metrics, dataset=hosting.dataset)
    runtime = Runtime(settings=settings, server_name=server_name, token=token, registry=registry,
                      repository=model_repository, metrics=server_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        held = resources(runtime) if resources is not None else nullcontext()
        async with held:
            try:
                for name in hosting.models(hosting.source):
                    model = await asyncio.to_thread(hosting.loader, name, hosting.source)
                    await model_repository.add(model, source=hosting.source)
                logger.info("ready: %s on http://%s:%s serving %s (auth %s)", server_name, settings.host,
                            getattr(settings, "port", "?"), registry.names(), "on" if token else "off")
                with reload_on_sighup(model_repository.reload_all, what=f"bundle {hosting.source}"):
                    yield
            finally:
                await registry.close()

    app = ServingApp(InferFastPath(runtime), title=title, summary=summary, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.settings = settings
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(infer.router)
    app.include_router(metrics_api.router)
    app.include_router(repository.router)
    install_error_handlers(app)
    return app
