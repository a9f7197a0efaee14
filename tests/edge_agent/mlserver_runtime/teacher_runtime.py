"""A custom MLServer runtime serving the tiny bundle's teacher as model `teacher` (OIP over MLServer).

Runs inside MLServer's own venv (.venv-mlserver), which has neither onnx nor onnxruntime, so the
test exports teacher.onnx's layers to `teacher.npz` (W0, b0, W1, b1, ... plus the manifest's mean
and std) and this runtime evaluates the same graph in numpy: Flatten -> (MatMul -> Add -> Relu)*
-> MatMul -> Add. Where onnxruntime is importable and teacher.onnx sits next to the npz, it runs
the ONNX file instead. Outputs mirror our cloud: `logits` FP32 [N, K] and `label` INT64 [N].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class TeacherRuntime(MLModel):
    async def load(self) -> bool:
        path = Path(await get_model_uri(self._settings))
        weights = np.load(path)
        self._mean = weights["mean"].astype(np.float32).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        self._std = weights["std"].astype(np.float32).reshape(1, -1, 1, 1)
        n_layers = sum(1 for key in weights.files if key.startswith("W"))
        self._layers = [(weights[f"W{i}"], weights[f"b{i}"]) for i in range(n_layers)]
        self._session = None
        onnx_path = path.with_suffix(".onnx")
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
        if ort is not None and onnx_path.is_file():
            self._session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        return True

    def _logits(self, x: np.ndarray) -> np.ndarray:
        z = ((x.astype(np.float32) - self._mean) / self._std).astype(np.float32)  # (N, C, H, W)
        if self._session is not None:
            return self._session.run(None, {self._session.get_inputs()[0].name: z})[0]
        h = z.reshape(len(z), -1)  # Flatten
        for i, (weight, bias) in enumerate(self._layers):
            h = h @ weight + bias
            if i < len(self._layers) - 1:
                h = np.maximum(h, 0.0)  # Relu between layers, as in the exported graph
        return h.astype(np.float32)

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])  # (N, C, H, W) raw pixels
        logits = self._logits(x)
        labels = logits.argmax(axis=1).astype(np.int64)
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id,
            outputs=[NumpyCodec.encode_output("logits", logits), NumpyCodec.encode_output("label", labels)],
        )
