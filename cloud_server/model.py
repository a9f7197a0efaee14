"""The served teacher (wire contract, input checks, normalisation) and the registry that holds it.

The registry is the one place a model is looked up by name, so a hot swap
(`POST /v2/repository/models/{name}/load`, see repository.py) only builds a ServedModel, puts it in
the registry, and retires the old one once the requests it already took have been answered.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from cloud_server.backend import Backend
from cloud_server.batcher import DynamicBatcher
from shared.bundle import Manifest
from shared.oip import ModelMetadata, ProtocolError, TensorMetadata, datatype_of

TEACHER = "teacher"
INPUT = "input"
LOGITS = "logits"
LABEL = "label"
OUTPUTS: tuple[str, ...] = (LOGITS, LABEL)
# UINT8 are raw pixels as the dataset stores them; FP32 are pixel values on that same raw scale
# (0-255, or 0-16 for digits), NOT normalised: the server normalises both with the manifest's mean/std.
INPUT_DATATYPES: tuple[str, ...] = ("UINT8", "FP32")

logger = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    """No model of that name (404); the message lists what is served."""


class ModelNotReadyError(RuntimeError):
    """The model is loaded but not (or no longer) ready (503)."""


class ServedModel:
    """One model behind the protocol: checks inputs against the manifest and batches its compute."""

    def __init__(self, *, name: str, manifest: Manifest, backend: Backend, batcher: DynamicBatcher,
                 version: str = "1") -> None:
        self.name = name
        self.version = version
        self.manifest = manifest
        self.backend = backend
        self.batcher = batcher
        self.ready = False
        self._active = 0  # infer calls between their look-up and their answer; a swap waits for them
        self._idle = asyncio.Event()
        self._idle.set()
        if len(manifest.input.shape) != 3:
            raise ValueError(f"manifest input shape {manifest.input.shape} is not [C, H, W]")
        channels = manifest.input.shape[0]
        if len(manifest.input.mean) != channels or len(manifest.input.std) != channels:
            raise ValueError(f"manifest mean/std have {len(manifest.input.mean)}/{len(manifest.input.std)} "
                             f"values for {channels} channels")
        if min(manifest.input.std) <= 0:
            raise ValueError(f"manifest std {manifest.input.std} must be positive")
        self._mean = np.asarray(manifest.input.mean, dtype=np.float32).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        self._std = np.asarray(manifest.input.std, dtype=np.float32).reshape(1, -1, 1, 1)

    def metadata(self) -> ModelMetadata:
        c, h, w = self.manifest.input.shape
        return ModelMetadata(
            name=self.name,
            versions=[self.version],
            platform=f"edgecloud_{self.backend.name}",
            inputs=[TensorMetadata(name=INPUT, datatype="UINT8", shape=[-1, c, h, w])],
            outputs=[TensorMetadata(name=LOGITS, datatype="FP32", shape=[-1, len(self.manifest.classes)]),
                     TensorMetadata(name=LABEL, datatype="INT64", shape=[-1])],
        )

    def prepare(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """Check the request's tensors and return the normalised batch (N, C, H, W) float32."""
        unknown = [name for name in tensors if name != INPUT]
        if unknown:
            raise ProtocolError(f"model {self.name!r} has no input {unknown[0]!r}; "
                                f"its only input is {INPUT!r}")
        if INPUT not in tensors:
            raise ProtocolError(f"model {self.name!r} needs input {INPUT!r}")
        x = tensors[INPUT]
        datatype = datatype_of(x)
        if datatype not in INPUT_DATATYPES:
            raise ProtocolError(f"input {INPUT!r}: datatype {datatype} is not accepted; "
                                f"send UINT8 raw pixels or FP32 raw-scale pixels")
        expected = [-1, *self.manifest.input.shape]
        if x.ndim != len(expected) or list(x.shape[1:]) != expected[1:]:
            raise ProtocolError(f"input {INPUT!r}: expected shape {expected}, got {list(x.shape)}")
        if x.shape[0] > self.batcher.max_queue_size:
            raise ProtocolError(f"input {INPUT!r}: a batch of {x.shape[0]} samples exceeds max_queue_size "
                                f"{self.batcher.max_queue_size}; split it", status_code=413)
        # x = (raw - mean) / std per channel, exactly as shared.datasets.normalize does for training.
        return ((x.astype(np.float32) - self._mean) / self._std).astype(np.float32, copy=False)

    async def infer(self, x: np.ndarray, *, timeout_s: float) -> dict[str, np.ndarray]:
        """{"logits": (N, K) float32, "label": (N,) int64} for a prepared batch."""
        if not self.ready:
            raise ModelNotReadyError(f"model {self.name!r} is not ready")
        if len(x) == 0:
            logits = np.zeros((0, len(self.manifest.classes)), dtype=np.float32)
        else:
            self._active += 1
            self._idle.clear()
            try:
                logits = await self.batcher.submit(x, timeout_s=timeout_s)
            finally:
                self._active -= 1
                if not self._active:
                    self._idle.set()
            if not np.isfinite(logits).all():
                # Finite but huge FP32 pixels can overflow inside the network; NaN logits are no answer.
                raise ProtocolError(f"input {INPUT!r} drove the teacher to non-finite logits; send raw pixel "
                                    "values in the dataset's range", status_code=422)
        return {LOGITS: logits, LABEL: logits.argmax(axis=1).astype(np.int64)}

    async def retire(self, *, grace_s: float) -> None:
        """After a swap: let the requests this model already took finish (up to `grace_s`), then stop it.

        No new request reaches a model once it left the registry, so waiting for the in-flight count
        to reach zero is what makes a swap lose no request.
        """
        try:
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("model %r still had %d requests after %.1f s; stopping it anyway (they get 503)",
                           self.name, self._active, grace_s)
        self.ready = False
        await self.batcher.stop()


class ModelRegistry:
    """Models by name. Swapping one in replaces the old entry; the caller retires the old model."""

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}

    def add(self, model: ServedModel) -> ServedModel | None:
        """Serve `model` under its name; returns the model it replaced, if any."""
        previous = self._models.get(model.name)
        self._models[model.name] = model
        return previous

    def get(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFoundError(f"unknown model {name!r}; "
                                     f"this server serves {sorted(self._models)}") from None

    def names(self) -> list[str]:
        return sorted(self._models)

    @property
    def ready(self) -> bool:
        return bool(self._models) and all(model.ready for model in self._models.values())

    async def close(self) -> None:
        for model in self._models.values():
            model.ready = False
            await model.batcher.stop()
