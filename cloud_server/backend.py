"""Compute backends for the teacher: normalised float32 images in, logits out, one batch at a time.

Backends are called from a single worker thread (see batcher.py), so they need not be re-entrant;
their parallelism is the runtime's intra-op threads.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from shared.bundle import BundleError, Manifest, verify_file

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
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No busy-waiting between passes: idle spinning threads would steal the event loop's core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped errors for a bad graph
            raise BundleError(f"{path}: onnxruntime cannot load it: {err}") from err
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def infer(self, x: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([self._output], {self._input: x})
        return np.asarray(logits, dtype=np.float32)


class TorchBackend:
    """torch on teacher.pt, rebuilt by networks.checkpoint.load_checkpoint; torch is imported here only."""

    name = "torch"

    def __init__(self, path: Path, *, threads: int) -> None:
        import torch

        from networks.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        self._torch = torch
        try:
            self._model = load_checkpoint(path)
        except Exception as err:  # CheckpointError, or unpickling errors from a foreign teacher.pt
            raise BundleError(f"{path}: cannot load the torch teacher: {err}") from err

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            logits = self._model(self._torch.from_numpy(x))
        return logits.float().numpy()


def load_backend(bundle: Path, manifest: Manifest, *, kind: Literal["onnx", "torch"],
                 threads: int) -> Backend:
    """Verify the teacher file's sha256 against the manifest, then load it."""
    teacher = manifest.models[manifest.teacher]
    filename = teacher.file if kind == "onnx" else teacher.checkpoint
    if filename is None:
        other = "torch" if kind == "onnx" else "onnx"
        wanted = "ONNX file" if kind == "onnx" else "torch checkpoint"
        raise BundleError(f"{bundle}: teacher {manifest.teacher!r} has no {wanted} in this bundle; "
                          f"try --backend {other}")
    path = verify_file(bundle, manifest, filename)
    return OnnxBackend(path, threads=threads) if kind == "onnx" else TorchBackend(path, threads=threads)


def warm_up(backend: Backend, manifest: Manifest, *, batch_sizes: tuple[int, ...], rounds: int = 2) -> float:
    """Run every batch size `rounds` times and check the logits' shape; return the wall time in ms.

    The first runs allocate arenas and pick kernels, so serving them to clients would show as a
    latency spike; a wrong output shape (a teacher for another dataset) fails start-up here.
    """
    shape = tuple(manifest.input.shape)
    n_classes = len(manifest.classes)
    started = time.perf_counter()
    for batch in batch_sizes:
        x = np.zeros((batch, *shape), dtype=np.float32)  # (B, C, H, W)
        for _ in range(rounds):
            logits = backend.infer(x)
            if logits.shape != (batch, n_classes):
                raise BundleError(f"teacher returns logits of shape {logits.shape} for a batch of {batch}; "
                                  f"the manifest expects ({batch}, {n_classes})")
    return 1000.0 * (time.perf_counter() - started)


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
