"""The models a server hosts, by name: the one place the data plane and the repository look a model up.

A hot swap builds a new model, puts it here under the same name (the old entry is returned to be
retired once its requests are answered), and an unload takes a model out. Lookups are plain dict
reads on the event loop, so a request sees either the old model or the new one, never neither.
"""

from __future__ import annotations

from serving.errors import ModelNotFoundError
from serving.model import ServedModel


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}

    def add(self, model: ServedModel) -> ServedModel | None:
        """Serve `model` under its name; returns the model it replaced, if any."""
        previous = self._models.get(model.name)
        self._models[model.name] = model
        return previous

    def remove(self, name: str) -> ServedModel:
        """Stop routing requests to `name`; the caller retires the returned model."""
        return self._models.pop(self.get(name).name)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(f"unknown model {name!r}; this server serves {sorted(self._models)}")
        if version is not None and version != model.version:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}; it has {[model.version]}")
        return model

    def names(self) -> list[str]:
        return sorted(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    @property
    def ready(self) -> bool:
        """Server readiness: at least one model, and every hosted model ready."""
        return bool(self._models) and all(model.ready for model in self._models.values())

    async def close(self) -> None:
        for model in list(self._models.values()):
            await model.stop()
