"""The edge agent: the runtime (serving/) hosting model `edge`, with the client to the next tier.

    uvicorn --factory edge_agent.app:create_app                          # settings from EDGECLOUD_*
    edgecloud edge serve --bundle artifacts/mnist --cloud-url http://cloud:8001   # CLI flags on top

A bundle with a split and trained planners (`edgecloud split build/profile/train`) is also served
as model `split` (edge_agent/split.py) beside `edge`; a bundle of split segments only serves `split`.

The client to the cloud (one keep-alive pool, one circuit breaker) lives as long as the server and
is shared by every `edge` model a hot swap brings in; the offload counters and the ratio gauge
(EdgeMetrics) are the server's too, so they run on across swaps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from edge_agent.agent import EdgeAgent
from edge_agent.cloud_client import CloudClient
from edge_agent.cooperative import EDGE_MODEL, CooperativeModel
from edge_agent.engine import EdgeEngine
from edge_agent.metrics import EdgeMetrics
from edge_agent.settings import EdgeSettings, get_settings
from edge_agent.split import SPLIT_MODEL, SplitAgent, SplitModel
from orchestration.agent import ORCHESTRATOR_MODEL, build_orchestrator
from orchestration.metrics import OrchestratorMetrics
from serving.app import Hosting, create_server
from serving.errors import ModelNotFoundError
from serving.metrics import ServerMetrics
from serving.model import ServedModel
from serving.state import Runtime
from shared.bundle import load_manifest
from shared.names import ModelRole

logger = logging.getLogger(__name__)

SERVER_NAME = "edgecloud-edge"


class _Link:
    """The client to the next tier, once the server has opened it (None: edge-only)."""

    cloud: CloudClient | None = None


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    """A new app with its own metrics registry; the bundle is loaded when the lifespan starts."""
    settings = settings if settings is not None else get_settings()
    settings.bearer_token()  # a bad token setting fails here, at start, not on the first offload
    metrics = ServerMetrics()
    edge_metrics = EdgeMetrics(ratio_window=settings.ratio_window, registry=metrics.registry, fusion=settings.fusion)
    link = _Link()

    @asynccontextmanager
    async def resources(_: Runtime) -> AsyncIterator[None]:
        if settings.cloud_url is None:
            yield
            return
        num_classes = len(load_manifest(settings.bundle, verify=False).classes)
        async with CloudClient(settings, num_classes=num_classes) as cloud:
            link.cloud = cloud
            warm = asyncio.create_task(cloud.keep_warm())  # no handshake on an offload after a quiet spell
            try:
                yield
            finally:
                warm.cancel()
                link.cloud = None

    orchestrator_metrics = OrchestratorMetrics(metrics.registry) if settings.edge_server_url is not None else None

    def hosted(bundle: Path) -> list[str]:
        from splitting.setup import has_split_planner

        manifest = load_manifest(bundle, verify=False)
        names = [EDGE_MODEL] if manifest.models_with_role(ModelRole.STUDENT) else []
        names += [SPLIT_MODEL] if has_split_planner(manifest) else []
        return names + ([ORCHESTRATOR_MODEL] if settings.edge_server_url is not None else [])

    def loader(name: str, bundle: Path) -> ServedModel:
        if name == ORCHESTRATOR_MODEL and orchestrator_metrics is not None:
            # The device-side orchestrator (orchestration/agent.py): its own clients to the edge server
            # and the cloud, opened here and closed when the model stops.
            model = build_orchestrator(settings.model_copy(update={"bundle": bundle}), metrics=orchestrator_metrics)
            logger.info("model %r: policy %r, edge server %s, cloud %s, warmed up in %.0f ms", name,
                        settings.policy, settings.base_edge_server_url, settings.base_cloud_url or "none",
                        model.warm_up())
            return model
        if name == SPLIT_MODEL:
            split = SplitModel(SplitAgent(bundle, cloud=link.cloud, threads=settings.threads,
                                          slowdown=settings.device_slowdown))
            logger.info("model %r from %s: cloud %s, warmed up in %.0f ms", SPLIT_MODEL, bundle,
                        settings.base_cloud_url or "none (device-only)", split.warm_up())
            return split
        if name != EDGE_MODEL:
            raise ModelNotFoundError(f"unknown model {name!r}; this server serves {hosted(bundle)}")
        engine = EdgeEngine.load(bundle, threads=settings.threads, threshold=settings.threshold,
                                 fusion=settings.fusion)
        agent = EdgeAgent(engine, metrics=edge_metrics, cloud=link.cloud, max_inflight=settings.max_inflight,
                          max_queue_size=settings.max_queue_size, model_metrics=metrics.for_model(EDGE_MODEL),
                          max_merged_samples=settings.max_merged_samples)
        model = CooperativeModel(agent)
        warm_ms = model.warm_up()
        logger.info("model %r from %s: cloud %s, filter %r, fusion %s, warmed up in %.0f ms", EDGE_MODEL, bundle,
                    settings.base_cloud_url or "none (edge-only)", engine.filter, engine.fusion or "off", warm_ms)
        return model

    hosting = Hosting(source=settings.bundle, models=hosted, loader=loader,
                      dataset=lambda bundle: load_manifest(bundle, verify=False).dataset)
    return create_server(settings, hosting=hosting, server_name=SERVER_NAME, metrics=metrics, resources=resources,
                         title="edgecloud edge",
                         summary="The student and the offloader behind an Open Inference Protocol endpoint, "
                                 "offloading complex samples to the cloud")
