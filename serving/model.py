"""One model behind the protocol: its metadata, input checks, batched compute, readiness and retirement.

As in KServe's Python model server, every model of every tier is one kind of object, and the
transport (serving/api) only looks it up by name and calls `infer`. `ServedModel` holds what all
models share: name, version, tensor metadata, the ready flag and the in-flight count that lets a
hot swap retire an old model without failing a request. Subclasses say how to compute:

- `ClassifierModel` (this module): an image classifier from a bundle (teacher, student, variant):
  raw pixels (or encoded images, decoded by shared/image_codec.py) -> the one normalisation -> graph
  -> logits and label, through a dynamic batcher;
- the edge's cooperative model (edge_agent/cooperative.py): student + offloader + the next tier.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from serving.backends import Backend
from serving.batcher import Batcher
from serving.errors import ModelNotReadyError
from shared.bundle import ModelEntry, TensorSpec
from shared.oip import ModelMetadata, ProtocolError, TensorMetadata
from shared.preprocess import ImagePreprocessor

logger = logging.getLogger(__name__)

INPUT, LOGITS, LABEL = "input", "logits", "label"


class ServedModel(ABC):
    """A model the runtime hosts. `infer` is what the protocol calls; subclasses implement `predict`."""

    platform = "edgecloud"

    def __init__(self, *, name: str, version: str = "1", inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], batcher: Batcher | None = None) -> None:
        self.name = name
        self.version = version
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.batcher = batcher
        self.classes: list[str] | None = None  # what a label means, for models that answer with labels
        self.ready = False
        self._active = 0  # infer calls between their look-up and their answer; a swap waits for them
        self._idle = asyncio.Event()
        self._idle.set()

    def load(self) -> tuple[int, float]:
        """(samples waiting, recent compute seconds per sample): what the infer route reports to clients."""
        if self.batcher is None:
            return 0, 0.0
        return self.batcher.depth, self.batcher.service_s_per_sample

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(tensor.name for tensor in self.outputs)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            name=self.name, versions=[self.version], platform=self.platform,
            inputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in self.inputs],
            outputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in self.outputs])

    def incompatibility(self, serving: ServedModel) -> str | None:
        """Why this model cannot replace `serving` while clients use it (None: it can)."""
        was = [(t.name, t.datatype, t.shape) for t in serving.inputs]
        now = [(t.name, t.datatype, t.shape) for t in self.inputs]
        if was != now:
            return f"it takes inputs {now}, the serving model {was}; clients send the old ones"
        was_out = [(t.name, t.shape) for t in serving.outputs]
        now_out = [(t.name, t.shape) for t in self.outputs]
        if was_out != now_out:
            return f"it gives outputs {now_out}, the serving model {was_out}; clients read the old ones"
        if serving.classes != self.classes:
            return f"it has classes {self.classes}, the serving model {serving.classes}; clients read labels " \
                   "in the old class order"
        return None

    def warm_up(self) -> float:
        """Blocking, in a worker thread, before the model serves: first passes allocate and pick kernels.

        Returns the milliseconds it took; raises if the model's outputs do not fit its metadata.
        """
        return 0.0

    async def start(self) -> None:
        if self.batcher is not None:
            await self.batcher.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()

    async def infer(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                    parameters: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The model's outputs for one request, by name (the transport picks the ones asked for)."""
        if not self.ready:
            raise ModelNotReadyError(f"model {self.name!r} is not ready")
        # The in-flight count `retire` waits on. Inline, not an async context manager: that builds an
        # async generator per request, a visible share of a 1-sample request's CPU.
        self._active += 1
        self._idle.clear()
        try:
            return await self.predict(tensors, timeout_s=timeout_s, parameters=parameters or {})
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @abstractmethod
    async def predict(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                      parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Check `tensors`, compute, and return every output (ProtocolError names a bad request)."""

    async def retire(self, *, grace_s: float) -> None:
        """After a swap or an unload: let the requests this model already took finish, then stop it.

        No new request reaches a model once it left the registry, so waiting for the in-flight count
        to reach zero is what makes a swap lose no request.
        """
        try:
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("model %r still had %d requests after %.1f s; stopping it anyway (they get 503)",
                           self.name, self._active, grace_s)
        await self.stop()


def single_input(model: str, tensors: dict[str, np.ndarray], name: str = INPUT) -> np.ndarray:
    """The request's one input tensor, or ProtocolError naming what is wrong."""
    unknown = [key for key in tensors if key != name]
    if unknown:
        raise ProtocolError(f"model {model!r} has no input {unknown[0]!r}; its only input is {name!r}")
    if name not in tensors:
        raise ProtocolError(f"model {model!r} needs input {name!r}")
    return tensors[name]


class ClassifierModel(ServedModel):
    """An image classifier from a bundle: raw pixels in, `logits` and `label` out, dynamically batched."""

    def __init__(self, *, name: str, entry: ModelEntry, preprocessor: ImagePreprocessor, backend: Backend,
                 classes: list[str], max_batch_size: int, max_queue_delay_s: float, max_queue_size: int,
                 metrics: Any = None, version: str = "1") -> None:
        c, h, w = preprocessor.sample_shape
        num_classes = len(classes)
        super().__init__(
            name=name, version=version,
            inputs=[TensorSpec(name=INPUT, datatype="UINT8", shape=[-1, c, h, w])],  # raw-scale FP32 too
            outputs=[TensorSpec(name=LOGITS, datatype="FP32", shape=[-1, num_classes]),
                     TensorSpec(name=LABEL, datatype="INT64", shape=[-1])],
            batcher=Batcher(self._compute, max_batch_size=max_batch_size, max_queue_delay_s=max_queue_delay_s,
                            max_queue_size=max_queue_size, metrics=metrics, name=name))
        self.entry = entry
        self.preprocessor = preprocessor
        self.backend = backend
        self.num_classes = num_classes
        self.classes = list(classes)
        self.platform = f"edgecloud_{backend.name}"

    def _compute(self, x: np.ndarray, _tags: Sequence[Hashable]) -> dict[str, np.ndarray]:
        """Worker thread: normalise the merged raw batch once, run the graph, check the logits."""
        logits = self.backend.infer(self.preprocessor.normalize(x))  # (B, K)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"graph returned logits of shape {list(logits.shape)}, expected [B, {self.num_classes}]")
        if not np.isfinite(logits).all():
            # Finite but huge FP32 pixels can overflow inside a network; NaN logits are no answer. Raised
            # per merged pass, the batcher re-runs its requests alone, so only the culprit gets the 422.
            raise ProtocolError(f"input {INPUT!r} drove model {self.name!r} to non-finite logits; send raw "
                                "pixel values in the dataset's range", status_code=422)
        return {LOGITS: logits, LABEL: logits.argmax(axis=1).astype(np.int64)}

    async def predict(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                      parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        x = single_input(self.name, tensors)
        assert self.batcher is not None
        if isinstance(x, np.ndarray) and x.ndim and x.shape[0] > self.batcher.max_queue_size:
            raise ProtocolError(f"input {INPUT!r}: a batch of {x.shape[0]} samples exceeds max_queue_size "
                                f"{self.batcher.max_queue_size}; split it", status_code=413)
        x = await self.preprocessor.check_async(x)
        if len(x) == 0:
            return {LOGITS: np.zeros((0, self.num_classes), np.float32), LABEL: np.zeros(0, np.int64)}
        return await self.batcher.submit(x, timeout_s=timeout_s)

    def warm_up(self, *, batch_sizes: Sequence[int] = (1,), rounds: int = 2) -> float:
        started = time.perf_counter()
        sizes = sorted({*batch_sizes, 1} | ({self.batcher.max_batch_size} if self.batcher else set()))
        for batch in sizes:
            x = np.zeros((batch, *self.preprocessor.sample_shape), dtype=np.uint8)  # (B, C, H, W)
            for _ in range(rounds):
                out = self._compute(x, [None])
                if out[LOGITS].shape != (batch, self.num_classes):
                    raise ValueError(f"model {self.name!r} returns logits of shape {list(out[LOGITS].shape)} "
                                     f"for a batch of {batch}; the bundle has {self.num_classes} classes")
        return 1000.0 * (time.perf_counter() - started)
