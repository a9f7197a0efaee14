"""The edge's compute: raw pixels -> normalised input -> ONNX student -> logits -> offload decision.

Synchronous and pure: no network, no metrics. The bundle's manifest is verified (every sha256)
before the offloader is unpickled, and the decision is the filter the manifest's operating point
names (the paper's SL offloader, §V) with an optional threshold override. Input checks and the
normalisation are the ones every tier and the training loop use (shared/preprocess.py). With
fusion on, the engine also holds the operating point's fusion parameters (offloading/fusion.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offloading.filters import OffloadFilter, make_filter
from offloading.fusion import FusionParams, fuse
from shared.bundle import BundleError, Manifest, load_manifest, load_offloader, verify_file
from shared.onnx_session import SessionError, open_session
from shared.preprocess import ImagePreprocessor, InputError

__all__ = ["EdgeEngine", "InputError", "StudentOutput"]


@dataclass(frozen=True)
class StudentOutput:
    """One batch through the student and the offloader."""

    logits: np.ndarray   # (N, K) float32
    offload: np.ndarray  # (N,) bool, True = the offloader calls the sample complex
    student_s: float     # seconds in onnxruntime (incl. normalisation)
    decision_s: float    # seconds in the offloader


class EdgeEngine:
    """The student session, the offloader filter and the input contract of one bundle."""

    def __init__(self, *, manifest: Manifest, session: Any,
                 offload_filter: OffloadFilter, bundle: Path | None = None,
                 fusion: FusionParams | None = None) -> None:
        self.manifest = manifest
        self.bundle = bundle  # the directory it was loaded from, when it was
        self.session = session
        self.filter = offload_filter
        self.fusion = fusion  # None: offloaded samples take the teacher's label (the paper's rule)
        try:
            self.preprocessor = ImagePreprocessor.from_spec(manifest.input)
        except ValueError as err:
            raise BundleError(f"manifest input: {err}") from None
        self.sample_shape: tuple[int, ...] = self.preprocessor.sample_shape  # (C, H, W)
        self.num_classes = len(manifest.classes)
        self._input_name = session.get_inputs()[0].name
        self._output_name = session.get_outputs()[0].name

    @classmethod
    def load(cls, bundle: Path, *, threads: int = 1, threshold: float | None = None,
             fusion: bool = False) -> EdgeEngine:
        """Verify the bundle, open student.onnx with `threads` intra-op threads, build the filter.

        `fusion` reads the operating point's fusion parameters; a bundle without them is a BundleError.
        """
        bundle = Path(bundle)
        manifest = load_manifest(bundle)  # checks every sha256 before anything is unpickled
        offloader = load_offloader(bundle, manifest)
        student = manifest.student_entry()
        if student.file is None:
            raise BundleError(f"{bundle}: student {manifest.student!r} has no ONNX file")
        path = verify_file(bundle, manifest, student.file)
        try:
            session = open_session(path, threads=threads)
        except SessionError as err:
            raise BundleError(str(err)) from err
        offload_filter = make_filter(manifest.operating_point, threshold=threshold, offloader=offloader)
        return cls(manifest=manifest, session=session, offload_filter=offload_filter, bundle=bundle,
                   fusion=fusion_params(bundle, manifest) if fusion else None)

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
        """The (N, C, H, W) raw pixels of `x` (pixels as they are, or encoded images decoded), else
        InputError naming why."""
        return self.preprocessor.check(x)

    def normalise(self, x_raw: np.ndarray) -> np.ndarray:
        """(N, C, H, W) raw pixels -> float32 (raw - mean) / std, per channel, as the student was trained."""
        return self.preprocessor.normalize(x_raw)

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

    def fuse(self, student_logits: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
        """(N,) int64 fused labels of offloaded samples (offloading/fusion.py); needs fusion on."""
        if self.fusion is None:
            raise RuntimeError("fusion is off for this engine; load it with fusion=True")
        return fuse(student_logits, teacher_logits, self.fusion)

    def run(self, x_raw: np.ndarray, *, decide: bool = True) -> StudentOutput:
        """Student then (when `decide`) offloader, timed separately for the per-batch histograms."""
        t0 = time.perf_counter()
        logits = self.logits(x_raw)
        t1 = time.perf_counter()
        offload = self.decide(logits) if decide else np.zeros(len(logits), dtype=bool)
        t2 = time.perf_counter()
        return StudentOutput(logits=logits, offload=offload, student_s=t1 - t0, decision_s=t2 - t1)


def fusion_params(bundle: Path, manifest: Manifest) -> FusionParams:
    """The default student's fusion parameters from its operating point, or BundleError saying why not."""
    raw = (manifest.operating_point.model_extra or {}).get("fusion")
    if not isinstance(raw, dict):
        raise BundleError(f"{bundle}: fusion was asked for, but the operating point has no fusion parameters; "
                          "rebuild with `edgecloud train-offloader`, or serve without --fusion")
    try:
        return FusionParams.from_mapping(raw)
    except ValueError as err:
        raise BundleError(f"{bundle}: operating_point.fusion: {err}") from None
