"""Hot swap of the edge's bundle (student + offloader): load beside the serving one, warm up, switch.

Reached through `POST /v2/repository/models/edge/load` (the OIP repository extension) and SIGHUP.
The new engine is verified, opened and warmed up in a worker thread while the old one keeps
answering; the switch is a single attribute assignment on the agent, which reads its engine once
per batch, so a batch already running finishes on the engine it started with and no request
fails. A bundle that fails to load changes nothing and the caller gets the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from edge_agent.agent import EdgeAgent
from edge_agent.engine import EdgeEngine
from edge_agent.settings import EdgeSettings
from shared.bundle import BundleError

logger = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A load that did not swap anything in; `status_code` is the HTTP answer, the old engine serves on."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def check_compatible(old: EdgeEngine, new: EdgeEngine, *, bundle: Path) -> None:
    """409 unless the new bundle keeps the contract clients and the cloud rely on (input shape, classes)."""
    if old.sample_shape != new.sample_shape:
        raise ModelLoadError(f"bundle {bundle} takes samples of shape {list(new.sample_shape)}, the serving one "
                             f"{list(old.sample_shape)}; clients send the old shape, so this needs a restart",
                             status_code=409)
    if old.manifest.classes != new.manifest.classes:
        raise ModelLoadError(f"bundle {bundle} has classes {new.manifest.classes}, the serving one "
                             f"{old.manifest.classes}; the cloud teacher answers in the old classes, so this "
                             "needs a restart", status_code=409)


class EngineRepository:
    """Where the serving engine came from, and the one way to replace it while serving."""

    def __init__(self, agent: EdgeAgent, settings: EdgeSettings) -> None:
        self.agent = agent
        self.settings = settings
        self.bundle: Path = settings.bundle  # where the serving engine came from
        self.last_error = ""                 # why the last load failed; cleared by a successful one
        self._lock = asyncio.Lock()          # one load at a time

    def _build(self, bundle: Path) -> EdgeEngine:
        """Worker thread: verify, open and warm up the bundle's student and offloader."""
        if not bundle.is_dir():
            raise ModelLoadError(f"bundle directory {bundle} does not exist", status_code=400)
        if not (bundle / "manifest.json").is_file():
            raise ModelLoadError(f"bundle {bundle} has no manifest.json; is it a bundle from `edgecloud build`?",
                                 status_code=400)
        try:
            # The threshold override is the operator's setting, so it applies to every bundle loaded.
            engine = EdgeEngine.load(bundle, threads=self.settings.threads, threshold=self.settings.threshold)
            engine.warm_up(batch_sizes=tuple(sorted({1, self.settings.batch_size})))
        except (BundleError, ValueError) as err:  # ValueError: a filter or input spec the manifest gets wrong
            raise ModelLoadError(f"bundle {bundle} cannot be served: {err}", status_code=422) from None
        return engine

    async def load(self, bundle: Path | None = None) -> tuple[EdgeEngine, float]:
        """Swap in the engine from `bundle` (default: the configured one); (engine, load ms).

        ModelLoadError leaves the serving engine as it was.
        """
        bundle = Path(bundle) if bundle is not None else self.settings.bundle
        async with self._lock:
            started = time.perf_counter()
            try:
                engine = await asyncio.to_thread(self._build, bundle)
                check_compatible(self.agent.engine, engine, bundle=bundle)
            except ModelLoadError as err:
                self.last_error = str(err)
                logger.error("load of bundle %s failed; the previous bundle keeps serving: %s", bundle, err)
                raise
            except Exception as err:  # service boundary: onnxruntime and unpickling raise untyped errors
                self.last_error = f"bundle {bundle}: {type(err).__name__}: {err}"
                logger.exception("load of bundle %s failed; the previous bundle keeps serving", bundle)
                raise ModelLoadError(self.last_error, status_code=500) from err
            load_ms = 1000.0 * (time.perf_counter() - started)
            self.agent.engine = engine  # the switch: batches already running keep their engine
            self.bundle, self.last_error = bundle, ""
        logger.info("now serving bundle %s (filter %r; loaded and warmed in %.0f ms)", bundle, engine.filter, load_ms)
        return engine, load_ms
