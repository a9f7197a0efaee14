"""The edge's model on the runtime: `edge`, the cooperative pipeline behind the Open Inference Protocol.

Input `input`: UINT8 raw pixels, or FP32 on the raw scale, [N, C, H, W], or BYTES encoded images
(JPEG, PNG; [N]), which an offload forwards to the next tier as they came; outputs `label` (INT64),
`source` (BYTES: an AnswerSource) and `fallback_reason` (BYTES: a FallbackReason, empty unless the
source is `edge-fallback`). The request parameter `strategy` (a Strategy) picks whether the agent
follows its offloader, never offloads or always offloads; the default is cooperation.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_agent.agent import EdgeAgent
from serving.model import INPUT, ServedModel, single_input
from shared.bundle import TensorSpec
from shared.names import Strategy
from shared.oip import ProtocolError

EDGE_MODEL = "edge"
OUTPUTS: tuple[str, ...] = ("label", "source", "fallback_reason")
PARAMETERS: tuple[str, ...] = ("strategy",)
"""Request parameters the model reads. Others are ignored, as OIP servers do: clients such as
tritonclient add parameters of their own (binary_data_output, sequence ids)."""


class CooperativeModel(ServedModel):
    """One bundle's student + offloader, and the shared client to the next tier, as model `edge`."""

    platform = "edgecloud_edge_onnxruntime"

    def __init__(self, agent: EdgeAgent, *, name: str = EDGE_MODEL, version: str = "1") -> None:
        c, h, w = agent.engine.sample_shape
        super().__init__(
            name=name, version=version,
            inputs=[TensorSpec(name=INPUT, datatype="UINT8", shape=[-1, c, h, w])],  # raw-scale FP32 too
            outputs=[TensorSpec(name="label", datatype="INT64", shape=[-1]),
                     TensorSpec(name="source", datatype="BYTES", shape=[-1]),
                     TensorSpec(name="fallback_reason", datatype="BYTES", shape=[-1])],
            batcher=agent.batcher)
        self.agent = agent
        self.classes = list(agent.engine.manifest.classes)  # the next tier answers in these, too

    def warm_up(self) -> float:
        return self.agent.engine.warm_up()

    async def stop(self) -> None:
        self.ready = False
        await self.agent.aclose()  # the client to the next tier is the service's, and stays open

    async def predict(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                      parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        x = single_input(self.name, tensors)
        strategy = parameters.get("strategy", Strategy.COOPERATION)
        if not isinstance(strategy, str):
            raise ProtocolError(f"parameter strategy must be one of {[s.value for s in Strategy]}, got {strategy!r}")
        answers = await self.agent.infer(x, strategy=strategy, started=started, timeout_s=timeout_s)
        return {"label": answers.labels, "source": answers.sources, "fallback_reason": answers.reasons}
