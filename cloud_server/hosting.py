"""Which models the cloud hosts from a bundle, and how one is built: verify, open, warm up.

By default the bundle's teacher; `models` names others (students, variants) to host beside it,
each an ordinary classifier of the runtime with its own batcher and metrics. A split tail
(`tail_p`, role split_tail) is hosted the same way as a `SplitTailModel`: it dequantises the
device's packed feature, then runs its graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from cloud_server.settings import CloudSettings
from serving.app import Hosting
from serving.backends import Backend, open_backend
from serving.errors import ModelNotFoundError
from serving.metrics import ServerMetrics
from serving.model import ClassifierModel, ServedModel
from serving.split_tail import SplitTailModel
from shared.bundle import Manifest, load_manifest, verify_file
from shared.names import ModelRole
from shared.preprocess import ImagePreprocessor

logger = logging.getLogger(__name__)

BackendLoader = Callable[[CloudSettings, Manifest, str], Backend]
"""(settings, manifest, model name) -> the compute backend; tests pass a fake one to control compute."""


def default_backend_loader(settings: CloudSettings, manifest: Manifest, model: str) -> Backend:
    return open_backend(settings.bundle, manifest, model, kind=settings.backend, threads=settings.threads)


def hosted_models(settings: CloudSettings, manifest: Manifest) -> list[str]:
    """The names this cloud serves from `manifest`: `settings.models`, else the bundle's teacher."""
    names = settings.models if settings.models is not None else [manifest.teacher]
    missing = [name for name in names if name not in manifest.models]
    if missing:
        raise ModelNotFoundError(f"model {missing[0]!r} is not in bundle {settings.bundle}; it has "
                                 f"{sorted(manifest.models)}")
    return list(names)


def build_model(settings: CloudSettings, name: str, *, metrics: ServerMetrics,
                backend_loader: BackendLoader = default_backend_loader) -> ServedModel:
    """Model `name` of `settings.bundle`, warmed up (not started); BundleError / ValueError say what is wrong."""
    manifest = load_manifest(settings.bundle, verify=True)  # every sha256 before anything is loaded
    entry = manifest.models.get(name)
    if entry is None:
        raise ModelNotFoundError(f"no model {name!r} in bundle {settings.bundle}; it has {sorted(manifest.models)}")
    if entry.role is ModelRole.SPLIT_TAIL:
        if entry.file is None:
            raise ValueError(f"split tail {name!r} has no ONNX file")
        tail = SplitTailModel(
            name=name, entry=entry, path=verify_file(settings.bundle, manifest, entry.file), classes=manifest.classes,
            max_batch_size=settings.max_batch_size, max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
            max_queue_size=settings.max_queue_size, threads=settings.threads, metrics=metrics.for_model(name))
        logger.info("split tail %r from %s warmed up in %.1f ms", name, settings.bundle, tail.warm_up())
        return tail
    if entry.takes != "raw_image":
        raise ValueError(f"model {name!r} takes {entry.takes} inputs; the cloud serves image classifiers")
    backend = backend_loader(settings, manifest, name)
    model = ClassifierModel(
        name=name, entry=entry, preprocessor=ImagePreprocessor.from_spec(manifest.input), backend=backend,
        classes=manifest.classes, max_batch_size=settings.max_batch_size,
        max_queue_delay_s=settings.max_queue_delay_ms / 1000.0, max_queue_size=settings.max_queue_size,
        metrics=metrics.for_model(name))
    warm_ms = model.warm_up()
    logger.info("%s %r from %s warmed up on backend %s (%d threads) in %.1f ms", entry.role, name,
                settings.bundle, backend.name, settings.threads, warm_ms)
    return model


def cloud_hosting(settings: CloudSettings, metrics: ServerMetrics, *,
                  backend_loader: BackendLoader = default_backend_loader) -> Hosting:
    def models(bundle: Path) -> list[str]:
        return hosted_models(settings.model_copy(update={"bundle": bundle}), load_manifest(bundle, verify=False))

    def loader(name: str, bundle: Path) -> ServedModel:
        return build_model(settings.model_copy(update={"bundle": bundle}), name, metrics=metrics,
                           backend_loader=backend_loader)

    return Hosting(source=settings.bundle, models=models, loader=loader,
                   dataset=lambda bundle: load_manifest(bundle, verify=False).dataset)
