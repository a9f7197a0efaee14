"""The OIP model-repository extension for any hosted model: index, load (hot swap), unload.

A load builds the new model in a worker thread while the old one keeps answering (verify every
sha256, open, warm up), checks that it keeps the wire contract clients rely on (409 otherwise),
starts it, and swaps it into the registry in one assignment. The old model is stopped only after
the requests it already took have been answered, so a swap under load fails no request. A load
that fails changes nothing: the old model keeps serving and the caller gets the reason. Unloading
one model leaves the others alone. SIGHUP reloads every hosted model from its configured source.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.errors import ModelLoadError, ModelNotFoundError
from serving.metrics import ServerMetrics
from serving.model import ServedModel
from serving.registry import ModelRegistry
from shared.bundle import BundleError
from shared.repository import LoadResponse, RepositoryIndexEntry, UnloadResponse

logger = logging.getLogger(__name__)

ModelLoader = Callable[[str, Path], ServedModel]
"""Blocking, in a worker thread: build model `name` from `source` (verified, opened, warmed up, not started).

Raises ModelNotFoundError when `source` has no such model, BundleError or ValueError when it cannot
be served."""


def _unchanged(name: str, registry: ModelRegistry) -> str:
    if name in registry:
        return f"model {name!r} not loaded, the previous bundle keeps serving"
    return f"model {name!r} not loaded"


class ModelRepository:
    """Where each hosted model comes from, and the one way to replace, add or remove one while serving."""

    def __init__(self, registry: ModelRegistry, *, loader: ModelLoader, source: Path,
                 available: Callable[[Path], list[str]], grace_s: float, metrics: ServerMetrics | None = None,
                 dataset: Callable[[Path], str] = lambda _: "") -> None:
        self.registry = registry
        self.loader = loader
        self.source = source                    # the configured source (bundle) of every model
        self.available = available              # models a source offers that this server would host
        self.grace_s = grace_s
        self.metrics = metrics
        self.dataset = dataset
        self.sources: dict[str, Path] = {}      # where each hosted model came from
        self.errors: dict[str, str] = {}        # why the last load of a model failed
        self.unloaded: set[str] = set()         # hosted models an operator took out; not "still loading"
        self._lock = asyncio.Lock()             # one change at a time: two racing swaps would retire each other

    def _build(self, name: str, source: Path) -> ServedModel:
        """Worker thread: the new model, or ModelLoadError with the HTTP status that says why not."""
        if not source.is_dir():
            raise ModelLoadError(f"bundle directory {source} does not exist", status_code=400)
        if not (source / "manifest.json").is_file():
            raise ModelLoadError(f"bundle {source} has no manifest.json; is it a bundle from `edgecloud build`?",
                                 status_code=400)
        try:
            return self.loader(name, source)
        except ModelNotFoundError as err:
            raise ModelLoadError(f"bundle {source}: {err}", status_code=404) from None
        except (BundleError, ValueError) as err:
            raise ModelLoadError(f"bundle {source} cannot be served: {err}", status_code=422) from None

    async def add(self, model: ServedModel, *, source: Path) -> None:
        """Start `model` and serve it (at start-up, before any request)."""
        await model.start()
        previous = self.registry.add(model)
        self.sources[model.name] = source
        logger.debug("model %r (%s) serving from %s", model.name, model.platform, source)
        if previous is not None:
            await previous.retire(grace_s=self.grace_s)

    async def load(self, name: str, source: Path | None = None) -> LoadResponse:
        """Serve `name` from `source` (default: the configured one), replacing the model of that name."""
        source = Path(source) if source is not None else self.source
        async with self._lock:
            started = time.perf_counter()
            try:
                new = await asyncio.to_thread(self._build, name, source)
                if name in self.registry:
                    reason = new.incompatibility(self.registry.get(name))
                    if reason is not None:
                        await new.stop()
                        raise ModelLoadError(f"model {name!r} from {source} cannot replace the serving one: "
                                             f"{reason}; this needs a restart", status_code=409)
            except ModelLoadError as err:
                self.errors[name] = str(err)
                logger.error("load of %r from %s failed; nothing changed: %s", name, source, err)
                raise ModelLoadError(f"{_unchanged(name, self.registry)}: {err}", status_code=err.status_code) from None
            except Exception as err:  # service boundary: onnxruntime and friends raise untyped errors
                self.errors[name] = f"bundle {source}: {type(err).__name__}: {err}"
                logger.error("load of %r from %s failed; nothing changed", name, source, exc_info=err)
                raise ModelLoadError(f"{_unchanged(name, self.registry)}: {self.errors[name]}",
                                     status_code=500) from err
            load_ms = 1000.0 * (time.perf_counter() - started)
            await new.start()
            old = self.registry.add(new)
            self.sources[name] = source
            self.errors.pop(name, None)
            self.unloaded.discard(name)
        logger.info("model %r now serves from %s (loaded and warmed in %.0f ms)", name, source, load_ms)
        if old is not None:
            await old.retire(grace_s=self.grace_s)
        return LoadResponse(name=new.name, version=new.version, bundle=str(source), dataset=self.dataset(source),
                            load_ms=load_ms)

    async def unload(self, name: str) -> UnloadResponse:
        """Stop serving `name`: new requests get 404, the ones it took are answered first."""
        async with self._lock:
            model = self.registry.remove(name)
            self.sources.pop(name, None)
            self.unloaded.add(name)
        await model.retire(grace_s=self.grace_s)
        if self.metrics is not None:
            self.metrics.forget(name)
        logger.info("model %r unloaded", name)
        return UnloadResponse(name=model.name, version=model.version)

    async def reload_all(self) -> None:
        """Reload every hosted model from the configured source (SIGHUP: "re-read your configuration")."""
        for name in self.registry.names():
            await self.load(name, self.source)

    def expects(self, name: str) -> bool:
        """Whether `name` is one of the models this server hosts from its configured source."""
        if name in self.unloaded:
            return False
        try:
            return name in self.available(self.source)
        except (BundleError, ValueError, OSError, LookupError):
            return False

    def index(self) -> list[RepositoryIndexEntry]:
        """Hosted models (READY or UNAVAILABLE), then the configured source's other models (UNAVAILABLE)."""
        entries = []
        for name in self.registry.names():
            model = self.registry.get(name)
            entries.append(RepositoryIndexEntry(name=name, version=model.version,
                                                state="READY" if model.ready else "UNAVAILABLE",
                                                reason=self.errors.get(name, "")))
        try:
            offered = self.available(self.source)
        except (BundleError, ValueError, OSError) as err:
            logger.warning("cannot list the models of %s: %s", self.source, err)
            offered = []
        for name in offered:
            if name not in self.registry:
                reason = self.errors.get(name, "unloaded" if name in self.unloaded else "not loaded yet")
                entries.append(RepositoryIndexEntry(name=name, state="UNAVAILABLE", reason=reason))
        return entries


@contextmanager
def reload_on_sighup(reload: Callable[[], Awaitable[object]], *, what: str) -> Iterator[None]:
    """While the block runs, a SIGHUP starts `reload()` in the running loop; a failure is logged, not raised.

    The conventional "re-read your configuration" signal of Unix daemons (systemd's ExecReload);
    here it reloads the configured bundle through the same path as the load endpoint. Signal
    handlers can only be installed from the main thread, so under a test client (lifespan in a
    worker thread) this does nothing.
    """
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def run() -> None:
        try:
            await reload()
        except Exception as err:  # a service boundary: the old bundle keeps serving, the log says why
            logger.error("SIGHUP: reloading %s failed, the previous bundle keeps serving: %s", what, err)
            return
        logger.info("SIGHUP: %s reloaded", what)

    def fire() -> None:
        task = loop.create_task(run(), name=f"sighup-reload-{what}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, fire)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread, or no SIGHUP
        logger.debug("SIGHUP reload of %s not installed (not in the main thread)", what)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in tasks:
            task.cancel()
