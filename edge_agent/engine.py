"""The edge's compute: raw pixels -> normalised input -> ONNX student -> logits -> offload decision.

Synchronous and pure: no network, no metrics. The bundle's manifest is verified (every sha256)
before the offloader is unpickled, and the decision is the filter the manifest's operating point
names (the paper's SL offloader, §V) with an optional threshold override.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from offloading.filters import OffloadFilter, make_filter
from shared.bundle import BundleError, Manifest, load_manifest, load_offloader, verify_file

ACCEPTED_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype(np.uint8), np.dtype(np.float32))


class InputError(ValueError):
    """A batch the student cannot take (wrong shape, dtype, NaN); the message names the problem."""


@dataclass(frozen=True)
class StudentOutput:
    """One batch through the student and the offloader."""

    logits: np.ndarray   # (N, K) float32
    offload: np.ndarray  # (N,) bool, True = the offloader calls the sample complex
    student_s: float     # seconds in onnxruntime (incl. normalisation)
    decision_s: float    # seconds in the offloader


class EdgeEngine:
    """The student session, the offloader filter and the input contract of one bundle."""

    def __init__(self, *, manifest: Manifest, session: ort.InferenceSession,
                 offload_filter: OffloadFilter, bundle: Path | None = None) -> None:
        self.manifest = manifest
        self.bundle = bundle  # the directory it was loaded from, when it was
        self.session = session
        self.filter = offload_filter
        self.sample_shape: tuple[int, ...] = tuple(manifest.input.shape)  # (C, H, W)
        self.num_classes = len(manifest.classes)
        channels = self.sample_shape[0]
        mean = np.asarray(manifest.input.mean, dtype=np.float32)
        std = np.asarray(manifest.input.std, dtype=np.float32)
        if mean.shape != (channels,) or std.shape != (channels,) or not np.all(std > 0):
            raise InputError(f"manifest input mean {manifest.input.mean} / std {manifest.input.std} do not give "
                             f"one positive std per channel ({channels})")
        # (raw - mean) / std as raw * scale + shift: one fused multiply-add per pixel, no float64 temporaries.
        self._scale = (1.0 / std)[None, :, None, None]  # (1, C, 1, 1)
        self._shift = (-mean / std)[None, :, None, None]
        self._input_name = session.get_inputs()[0].name
        self._output_name = session.get_outputs()[0].name

    @classmethod
    def load(cls, bundle: Path, *, threads: int = 1, threshold: float | None = None) -> EdgeEngine:
        """Verify the bundle, open student.onnx with `threads` intra-op threads, build the filter."""
        bundle = Path(bundle)
        manifest = load_manifest(bundle)  # checks every sha256 before anything is unpickled
        offloader = load_offloader(bundle, manifest)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        student = manifest.student_entry()
        if student.file is None:
            raise BundleError(f"{bundle}: student {manifest.student!r} has no ONNX file")
        path = verify_file(bundle, manifest, student.file)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped errors for a bad graph
            raise BundleError(f"{path}: onnxruntime cannot load it: {err}") from err
        offload_filter = make_filter(manifest.operating_point, threshold=threshold, offloader=offloader)
        return cls(manifest=manifest, session=session, offload_filter=offload_filter, bundle=bundle)

    def warm_up(self, *, batch_sizes: tuple[int, ...] = (1, 64), rounds: int = 2) -> float:
        """Run zero-pixel batches through student and offloader; return the wall time in ms.

        The first passes allocate onnxruntime's arenas, so a hot-swapped engine that skipped this
        would answer its first clients slowly; a student whose logits do not have one column per
        manifest class fails here (BundleError), before it serves anyone.
        """
        started = time.perf_counter()
        for batch in batch_sizes:
            x = np.zeros((batch, *self.sample_shape), dtype=np.uint8)  # (B, C, H, W)
            for _ in range(rounds):
                out = self.run(x)
                if out.logits.shape != (batch, self.num_classes) or out.offload.shape != (batch,):
                    raise BundleError(f"student returns logits of shape {list(out.logits.shape)} for a batch of "
                                     f"{batch}; the manifest has {self.num_classes} classes")
        return 1000.0 * (time.perf_counter() - started)

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """`x` if it is a (N, C, H, W) batch of raw uint8 or float32 pixels, else InputError naming why."""
        if not isinstance(x, np.ndarray):
            raise InputError(f"input must be a numpy array, got {type(x).__name__}")
        if x.dtype not in ACCEPTED_DTYPES:
            raise InputError(f"input dtype {x.dtype} is not accepted; send raw pixels as uint8 or float32")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.sample_shape:
            want = ", ".join(str(d) for d in self.sample_shape)
            raise InputError(f"input shape {list(x.shape)} does not match [N, {want}]")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
            raise InputError(f"input contains NaN or Inf (first in sample {row})")
        raw = np.dtype(self.manifest.input.dtype)
        if x.dtype.kind == "f" and x.size and raw.kind in "iu":
            # Raw-scale pixels live in the stored dtype's range. Checked per request, before requests are
            # merged: a value like 3e38 can overflow the student to NaN and fail a whole merged pass.
            low, high = np.iinfo(raw).min, np.iinfo(raw).max
            if x.min() < low or x.max() > high:
                raise InputError(f"input values must be raw pixels in [{low}, {high}] ({raw} as stored), "
                                 f"got values in [{x.min():g}, {x.max():g}]")
        return x

    def normalise(self, x_raw: np.ndarray) -> np.ndarray:
        """(N, C, H, W) raw pixels -> float32 (raw - mean) / std, per channel, as the student was trained."""
        return (x_raw.astype(np.float32) * self._scale + self._shift).astype(np.float32, copy=False)

    def logits(self, x_raw: np.ndarray) -> np.ndarray:
        """(N, C, H, W) raw pixels -> (N, K) float32 student logits."""
        x = self.check_input(x_raw)
        if len(x) == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        (out,) = self.session.run([self._output_name], {self._input_name: self.normalise(x)})
        logits = np.asarray(out, dtype=np.float32)
        if not np.isfinite(logits).all():
            # Finite but huge FP32 pixels can overflow inside the network, and the offloader refuses NaN.
            raise InputError("input drove the student to non-finite logits; send raw pixel values in the "
                             "dataset's range")
        return logits

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) logits -> (N,) bool offload mask at the operating point."""
        if len(logits) == 0:
            return np.zeros(0, dtype=bool)
        return np.asarray(self.filter.decide(logits), dtype=bool)

    def run(self, x_raw: np.ndarray, *, decide: bool = True) -> StudentOutput:
        """Student then (when `decide`) offloader, timed separately for the per-batch histograms."""
        t0 = time.perf_counter()
        logits = self.logits(x_raw)
        t1 = time.perf_counter()
        offload = self.decide(logits) if decide else np.zeros(len(logits), dtype=bool)
        t2 = time.perf_counter()
        return StudentOutput(logits=logits, offload=offload, student_s=t1 - t0, decision_s=t2 - t1)
