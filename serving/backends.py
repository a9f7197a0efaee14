"""Compute backends for a bundle's graphs: a batch in, the graph's first output out, one batch at a time.

Backends are called from a model's single worker thread (serving/batcher.py), so they need not be
re-entrant; their parallelism is the runtime's intra-op threads. onnxruntime is the default on
every tier; torch (the cloud's opt-in, for checkpoints that were not exported) is imported only
when asked for, so a server without torch installed runs every ONNX model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from shared.bundle import BundleError, Manifest, verify_file
from shared.onnx_session import SessionError, open_session

logger = logging.getLogger(__name__)


class Backend(Protocol):
    name: str

    def infer(self, x: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32, already normalised -> (B, K) float32 logits."""
        ...


class OnnxBackend:
    """onnxruntime on teacher.onnx: sequential execution, `threads` intra-op threads."""

    name = "onnx"

    def __init__(self, path: Path, *, threads: int) -> None:
        try:
            self._session = open_session(path, threads=threads, serving=True)
        except SessionError as err:
            raise BundleError(str(err)) from err
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def infer(self, x: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([self._output], {self._input: x})
        return np.asarray(logits, dtype=np.float32)


TORCH_MISSING = ("torch is not installed: serve the ONNX graph (the default backend), or install torch "
                 "(`pip install torch==2.13.0`; the cloud image: `docker build --build-arg WITH_TORCH=true .`)")


class TorchBackend:
    """torch on a checkpoint, rebuilt by networks.checkpoint.load_checkpoint; torch is imported here only."""

    name = "torch"

    def __init__(self, path: Path, *, threads: int) -> None:
        try:
            import torch

            from networks.checkpoint import load_checkpoint
        except ImportError as err:
            raise BundleError(f"{path}: {TORCH_MISSING} ({err})") from None

        torch.set_num_threads(threads)
        self._torch = torch
        try:
            self._model = load_checkpoint(path)
        except Exception as err:  # CheckpointError, or unpickling errors from a foreign checkpoint
            raise BundleError(f"{path}: cannot load the torch model: {err}") from err

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            logits = self._model(self._torch.from_numpy(x))
        return logits.float().numpy()


BackendKind = Literal["onnx", "torch"]


def open_backend(bundle: Path, manifest: Manifest, model: str, *, kind: BackendKind, threads: int) -> Backend:
    """Verify the model's file (ONNX graph or torch checkpoint) against the manifest, then open it."""
    entry = manifest.models.get(model)
    if entry is None:
        raise BundleError(f"{bundle}: no model {model!r} in this bundle; it has {sorted(manifest.models)}")
    filename = entry.file if kind == "onnx" else entry.checkpoint
    if filename is None:
        other = "torch" if kind == "onnx" else "onnx"
        wanted = "ONNX file" if kind == "onnx" else "torch checkpoint"
        raise BundleError(f"{bundle}: {entry.role} {model!r} has no {wanted} in this bundle; try --backend {other}")
    path = verify_file(bundle, manifest, filename)
    return OnnxBackend(path, threads=threads) if kind == "onnx" else TorchBackend(path, threads=threads)


def measure_throughput(backend: Backend, x: np.ndarray, *, seconds: float) -> float:
    """Samples per second over `seconds`, after a few warm-up passes."""
    for _ in range(3):
        backend.infer(x)
    passes = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        backend.infer(x)
        passes += 1
    return passes * len(x) / elapsed
