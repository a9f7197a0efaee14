"""A split's server side as a model of the runtime: packed feature in, the chosen exit's answer out.

Model `tail_p` (role split_tail) takes input `feature` (UINT8 [N, packed bytes]) with request
parameters `scale`, `zero_point` and `bits` (shared/feature_codec.py) and optionally `exit` (one of
the exits after p; default the last). It dequantises each request on its own (its parameters are
its own), then merged requests run the tail graph together through the runtime's batcher. Outputs
`logits` (FP32 [N, K]) and `label` (INT64 [N]) of the chosen exit. A bad parameter is a 400 naming it.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.batcher import Batcher
from serving.model import LABEL, LOGITS, ServedModel
from shared.bundle import BundleError, ModelEntry, TensorSpec
from shared.feature_codec import FEATURE, dequantize, from_request, quantize
from shared.oip import ProtocolError
from shared.onnx_session import SessionError, open_session


class SplitTailModel(ServedModel):
    """tail_p of a bundle behind the protocol."""

    platform = "edgecloud_split_tail_onnxruntime"

    def __init__(self, *, name: str, entry: ModelEntry, path: Path, classes: list[str], max_batch_size: int,
                 max_queue_delay_s: float, max_queue_size: int, threads: int = 1, metrics: Any = None,
                 version: str = "1") -> None:

        try:
            self.feature_shape = tuple(int(d) for d in entry.parameters["feature_shape"])
            self.exits = [int(e) for e in entry.parameters["exits"]]
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"split tail {name!r}: parameters need feature_shape and exits ({err})") from None
        num_classes = len(classes)
        super().__init__(
            name=name, version=version, inputs=[TensorSpec(name=FEATURE, datatype="UINT8", shape=[-1, -1])],
            outputs=[TensorSpec(name=LOGITS, datatype="FP32", shape=[-1, num_classes]),
                     TensorSpec(name=LABEL, datatype="INT64", shape=[-1])],
            batcher=Batcher(self._compute, max_batch_size=max_batch_size, max_queue_delay_s=max_queue_delay_s,
                            max_queue_size=max_queue_size, metrics=metrics, name=name))
        try:
            self._session = open_session(path, threads=threads, serving=True)
        except SessionError as err:
            raise BundleError(str(err)) from err
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.entry = entry
        self.classes = list(classes)
        self.num_classes = num_classes

    def _compute(self, x: np.ndarray, _tags: Sequence[Hashable]) -> dict[str, np.ndarray]:
        """Worker thread: every later exit's logits for the merged, dequantised batch."""
        outs = self._session.run(self._outputs, {FEATURE: np.ascontiguousarray(x, np.float32)})
        return {name: np.asarray(v, np.float32) for name, v in zip(self._outputs, outs, strict=True)}

    def _exit(self, parameters: dict[str, Any]) -> int:
        chosen = parameters.get("exit", self.exits[-1])
        if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen not in self.exits:
            raise ProtocolError(f"parameter exit must be one of {self.exits} for model {self.name!r}, got {chosen!r}")
        return chosen

    async def predict(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                      parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        feature = from_request(tensors, parameters, shape=self.feature_shape)
        chosen = self._exit(parameters)
        assert self.batcher is not None
        if len(feature.packed) > self.batcher.max_queue_size:
            raise ProtocolError(f"input {FEATURE!r}: a batch of {len(feature.packed)} samples exceeds "
                                f"max_queue_size {self.batcher.max_queue_size}; split it", status_code=413)
        if len(feature.packed) == 0:
            return {LOGITS: np.zeros((0, self.num_classes), np.float32), LABEL: np.zeros(0, np.int64)}
        rows = await self.batcher.submit(dequantize(feature), timeout_s=timeout_s)
        logits = rows[f"exit_{chosen}"]
        if not np.isfinite(logits).all():
            raise ProtocolError(f"feature drove model {self.name!r} to non-finite logits", status_code=422)
        return {LOGITS: logits, LABEL: logits.argmax(axis=1).astype(np.int64)}

    def warm_up(self) -> float:
        started = time.perf_counter()
        zeros = quantize(np.zeros((1, *self.feature_shape), np.float32), 8)
        for _ in range(2):
            out = self._compute(dequantize(zeros), [None])
            if out[f"exit_{self.exits[-1]}"].shape != (1, self.num_classes):
                raise BundleError(f"split tail {self.name!r} gives logits of shape "
                                  f"{list(out[f'exit_{self.exits[-1]}'].shape)}; the bundle has {self.num_classes} "
                                  "classes")
        return 1000.0 * (time.perf_counter() - started)
