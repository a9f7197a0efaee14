"""What a bundle computes on a split, without servers: its ONNX models and offloader through onnxruntime.

The same decision path the edge runs (shared.bundle.load_offloader, offloading.filters.make_filter at
the manifest's operating point, offloading.fusion.fuse with the manifest's fusion parameters), applied
to a whole split at once. `edgecloud pack` records these figures for a packed bundle, and the tests
check that a bundle in the repository still computes the figures its manifest states.

    figures = bundle_figures(Path("models/cifar10"), dataset.test)   # edgecloud pack, tests
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.bundle import Manifest, load_manifest, load_offloader
from shared.datasets import Split
from shared.onnx_session import batch_logits, open_session
from shared.preprocess import normalize

FIGURES: tuple[str, ...] = ("teacher_accuracy", "student_accuracy", "cooperative_accuracy", "offload_rate",
                            "cooperative_accuracy_fused")
"""The manifest metrics a bundle's models and offloader determine on the test split."""


def onnx_logits(path: Path, x_raw: np.ndarray, manifest: Manifest) -> np.ndarray:
    """(N, K) logits of one of the bundle's ONNX classifiers on raw pixels, normalised as the servers do."""
    return batch_logits(open_session(path), normalize(x_raw, manifest.input.mean, manifest.input.std))


def bundle_figures(bundle: Path, split: Split) -> dict[str, Any]:
    """Accuracy of teacher and student, and cooperation at the manifest's operating point, on ``split``."""
    from offloading.filters import make_filter
    from offloading.fusion import fuse

    manifest = load_manifest(bundle, verify=True)
    teacher = manifest.models[manifest.teacher]
    student = manifest.student_entry()
    if teacher.file is None or student.file is None:
        raise ValueError(f"{bundle}: the teacher and the student both need an ONNX file to be evaluated")
    t_logits = onnx_logits(Path(bundle) / teacher.file, split.x, manifest)
    s_logits = onnx_logits(Path(bundle) / student.file, split.x, manifest)
    op = manifest.operating_point
    offload = make_filter(op, offloader=load_offloader(bundle, manifest)).decide(s_logits)
    s_pred, t_pred = s_logits.argmax(1), t_logits.argmax(1)
    answers = np.where(offload, t_pred, s_pred)
    figures: dict[str, Any] = {
        "samples": len(split.y),
        "teacher_accuracy": float((t_pred == split.y).mean()),
        "student_accuracy": float((s_pred == split.y).mean()),
        "cooperative_accuracy": float((answers == split.y).mean()),
        "offload_rate": float(offload.mean()),
    }
    fusion = op.model_dump().get("fusion")
    if fusion:
        fused = answers.copy()
        if offload.any():
            fused[offload] = fuse(s_logits[offload], t_logits[offload], fusion)
        figures["cooperative_accuracy_fused"] = float((fused == split.y).mean())
    return figures
