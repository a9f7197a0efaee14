"""Build the served teacher from a bundle: verify, load, warm up. Runs once, in the app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cloud_server.backend import Backend, load_backend, warm_up
from cloud_server.batcher import DynamicBatcher
from cloud_server.metrics import CloudMetrics
from cloud_server.model import TEACHER, ServedModel
from cloud_server.settings import CloudSettings
from shared.bundle import Manifest, load_manifest

logger = logging.getLogger(__name__)

BackendLoader = Callable[[CloudSettings, Manifest], Backend]
"""Makes the compute backend; tests pass a fake one to create_app to control compute."""


def default_backend_loader(settings: CloudSettings, manifest: Manifest) -> Backend:
    return load_backend(settings.bundle, manifest, kind=settings.backend, threads=settings.threads)


def load_teacher(settings: CloudSettings, metrics: CloudMetrics, *,
                 backend_loader: BackendLoader = default_backend_loader) -> ServedModel:
    """The teacher, warmed up and marked ready; BundleError / ValueError name what is wrong."""
    manifest = load_manifest(settings.bundle, verify=True)  # every sha256 before anything is loaded
    logger.info("bundle %s loaded: dataset %s, input %s, %d classes", settings.bundle, manifest.dataset,
                manifest.input.shape, len(manifest.classes))
    backend = backend_loader(settings, manifest)
    batcher = DynamicBatcher(backend.infer, max_batch_size=settings.max_batch_size,
                             max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
                             max_queue_size=settings.max_queue_size, metrics=metrics)
    model = ServedModel(name=TEACHER, manifest=manifest, backend=backend, batcher=batcher)
    warm_ms = warm_up(backend, manifest, batch_sizes=tuple(sorted({1, settings.max_batch_size})))
    logger.info("teacher warmed up on backend %s (%d threads) in %.1f ms", backend.name, settings.threads,
                warm_ms)
    model.ready = True
    return model
