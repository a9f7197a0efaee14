"""One server's runtime state: what every route and the lifespan share (app.state.runtime)."""

from __future__ import annotations

from dataclasses import dataclass

from serving.errors import ModelNotFoundError, ModelNotReadyError
from serving.metrics import ServerMetrics
from serving.model import ServedModel
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import ServerSettings


@dataclass
class Runtime:
    settings: ServerSettings
    server_name: str              # answered by GET /v2
    token: str | None             # bearer token for inference and the repository; None = open
    registry: ModelRegistry
    repository: ModelRepository
    metrics: ServerMetrics

    def lookup(self, name: str, version: str | None = None) -> ServedModel:
        """The hosted model; 503 for one this server hosts but has not loaded yet (starting), else 404."""
        try:
            return self.registry.get(name, version)
        except ModelNotFoundError:
            if name not in self.registry and self.repository.expects(name):
                raise ModelNotReadyError(f"model {name!r} is not ready yet (still loading)") from None
            if name in self.repository.unloaded:
                raise ModelNotFoundError(f"unknown model {name!r}: it was unloaded; load it again with POST "
                                         f"/v2/repository/models/{name}/load") from None
            raise
