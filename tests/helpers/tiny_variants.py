"""A tiny bundle with a variant family, torch-free, for testing orchestration.

The variants are the tiny bundle's student and teacher graphs under variant names, each with its
accuracy and latency measured here (shared.variant_profile.measure_latency_ms), the same metrics
`edgecloud variants` writes, plus the per-sample correctness artifact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.bundle import ModelEntry, load_manifest, write_manifest
from shared.names import ModelRole
from shared.preprocess import normalize
from shared.variant_profile import (
    BATCH,
    CORRECT_ARTIFACT,
    DEFAULT_TIERS,
    PROFILE_ARTIFACT,
    measure_latency_ms,
    per_tier,
    profile_document,
)
from tests.helpers.tiny_bundle import SHAPE, add_student, make_tiny_bundle


def make_variant_bundle(out_dir: Path, *, source: Path | None = None) -> Path:
    """Tiny bundle (a copy of `source`, else a new one) + variants `variant-a` (a weak logistic
    regression), `variant-b` (the student) and the teacher."""
    if source is None:
        bundle = make_tiny_bundle(out_dir)
    else:
        bundle = Path(shutil.copytree(source, out_dir))
        shutil.copy(source.parent / f"{source.name}-test.npz", bundle.parent / f"{bundle.name}-test.npz")
    add_student(bundle, "weak", c=0.001, max_iter=5)
    manifest = load_manifest(bundle)
    test = np.load(bundle.parent / f"{bundle.name}-test.npz")
    x = normalize(test["x"], manifest.input.mean, manifest.input.std)
    models = dict(manifest.models)
    correct = {}
    for name, source in (("variant-a", "weak.onnx"), ("variant-b", "student.onnx"), ("teacher", "teacher.onnx")):
        file = source if name == "teacher" else f"{name}.onnx"
        if name != "teacher":
            shutil.copy(bundle / source, bundle / file)
        session = ort.InferenceSession(str(bundle / file), providers=["CPUExecutionProvider"])
        correct[name] = session.run(["logits"], {"input": x})[0].argmax(axis=1) == test["y"]
        host = measure_latency_ms(bundle / file, SHAPE, rounds=5)
        metrics = {"accuracy": float(correct[name].mean()), "onnx_bytes": (bundle / file).stat().st_size,
                   "latency_ms": per_tier(host[1], DEFAULT_TIERS), "batch_ms": per_tier(host[BATCH], DEFAULT_TIERS)}
        base = manifest.models["teacher" if name == "teacher" else "student"]
        role = ModelRole.TEACHER if name == "teacher" else ModelRole.VARIANT
        models[name] = ModelEntry(role=role, file=file, checkpoint=base.checkpoint if name == "teacher" else None,
                                  inputs=base.inputs, outputs=base.outputs, arch=base.arch,
                                  metrics={**base.metrics, **metrics})
    np.savez(bundle / "correct.npz", **correct)
    # No encoded size is known for these 8x8 digits: a request is the 64 raw pixels + the overhead (264 B).
    (bundle / "profile.json").write_text(json.dumps(profile_document(tiers=DEFAULT_TIERS, input_shape=SHAPE)))
    artifacts = {PROFILE_ARTIFACT: "profile.json", CORRECT_ARTIFACT: "correct.npz"}
    write_manifest(bundle, manifest.model_copy(update={"models": models, "artifacts": artifacts}))
    return bundle
