"""Hot swap of the teacher: load a bundle beside the one serving, warm it up, switch, retire the old one.

Reached through `POST /v2/repository/models/teacher/load` (the OIP repository extension) and
SIGHUP. The new teacher is verified, opened and warmed up in a worker thread while the old one
keeps answering; the switch is one registry assignment, and the old model is stopped only after
the requests it already took have been answered, so a swap under load fails no request. A bundle
that fails to load changes nothing: the old teacher keeps serving and the caller gets the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from cloud_server.loader import BackendLoader, load_teacher
from cloud_server.metrics import CloudMetrics
from cloud_server.model import TEACHER, ModelNotFoundError, ModelRegistry, ServedModel
from cloud_server.settings import CloudSettings
from shared.bundle import BundleError
from shared.repository import LoadResponse, RepositoryIndexEntry

logger = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A load that did not swap anything in; `status_code` is the HTTP answer, the old model serves on."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def check_compatible(old: ServedModel, new: ServedModel, *, bundle: Path) -> None:
    """409 unless the new teacher keeps the wire contract (input shape, classes) edges already rely on."""
    was, now = old.manifest, new.manifest
    if was.input.shape != now.input.shape:
        raise ModelLoadError(f"bundle {bundle} takes input shape {now.input.shape}, the serving teacher "
                             f"{was.input.shape}; edges send the old shape, so this needs a restart",
                             status_code=409)
    if was.classes != now.classes:
        raise ModelLoadError(f"bundle {bundle} has classes {now.classes}, the serving teacher {was.classes}; "
                             f"edges read labels in the old class order, so this needs a restart", status_code=409)


class TeacherRepository:
    """The served teacher's source bundle, and the one way to replace it while serving."""

    def __init__(self, registry: ModelRegistry, settings: CloudSettings, metrics: CloudMetrics, *,
                 backend_loader: BackendLoader) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.backend_loader = backend_loader
        self.bundle: Path = settings.bundle  # where the serving teacher came from
        self.last_error = ""                 # why the last load failed; cleared by a successful one
        self._lock = asyncio.Lock()          # one load at a time: two racing swaps would retire each other

    def _build(self, bundle: Path) -> ServedModel:
        """Worker thread: verify, open and warm up the teacher in `bundle` (blocking, seconds for big ones)."""
        if not bundle.is_dir():
            raise ModelLoadError(f"bundle directory {bundle} does not exist", status_code=400)
        if not (bundle / "manifest.json").is_file():
            raise ModelLoadError(f"bundle {bundle} has no manifest.json; is it a bundle from `edgecloud build`?",
                                 status_code=400)
        try:
            return load_teacher(self.settings.model_copy(update={"bundle": bundle}), self.metrics,
                                backend_loader=self.backend_loader)
        except (BundleError, ValueError) as err:
            raise ModelLoadError(f"bundle {bundle} cannot be served: {err}", status_code=422) from None

    async def load(self, name: str, bundle: Path | None = None) -> LoadResponse:
        """Swap in the teacher from `bundle` (default: the configured one); ModelLoadError changes nothing."""
        if name != TEACHER:
            raise ModelNotFoundError(f"unknown model {name!r}; this server serves {[TEACHER]}")
        bundle = Path(bundle) if bundle is not None else self.settings.bundle
        async with self._lock:
            started = time.perf_counter()
            try:
                new = await asyncio.to_thread(self._build, bundle)
                check_compatible(self.registry.get(name), new, bundle=bundle)
            except ModelLoadError as err:
                self.last_error = str(err)
                logger.error("load of %r from %s failed; the previous bundle keeps serving: %s", name, bundle, err)
                raise
            except Exception as err:  # service boundary: onnxruntime and friends raise untyped errors
                self.last_error = f"bundle {bundle}: {type(err).__name__}: {err}"
                logger.exception("load of %r from %s failed; the previous bundle keeps serving", name, bundle)
                raise ModelLoadError(self.last_error, status_code=500) from err
            load_ms = 1000.0 * (time.perf_counter() - started)
            await new.batcher.start()
            old = self.registry.add(new)
            self.bundle, self.last_error = bundle, ""
        logger.info("model %r now serves bundle %s (loaded and warmed in %.0f ms)", name, bundle, load_ms)
        if old is not None:
            await old.retire(grace_s=self.settings.request_timeout_s)
        return LoadResponse(name=new.name, version=new.version, bundle=str(bundle), dataset=new.manifest.dataset,
                            load_ms=load_ms)

    def index(self) -> list[RepositoryIndexEntry]:
        entries = []
        for name in self.registry.names():
            model = self.registry.get(name)
            entries.append(RepositoryIndexEntry(name=name, version=model.version,
                                                state="READY" if model.ready else "UNAVAILABLE",
                                                reason=self.last_error))
        return entries
