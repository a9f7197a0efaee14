"""A family of model variants from our own compression, for multi-tier orchestration (torch, offline).

The RL search (Algorithm 1) evaluates many students; each episode's row in
`reports/episodes.jsonl` holds its architecture, size and short-budget accuracy. We keep the
size/accuracy Pareto front of those rows, pick `count` points spread over it from tiny to mid-size
(log-spaced in bytes), rebuild each from the teacher (`surgery.shrink`, inheriting its weights),
distill it fully (SP-KD, as the student), export ONNX with a parity check, and add an int8 copy of
each (and of the teacher) quantized with onnxruntime's static QDQ quantization on validation
samples. Every variant's test accuracy and per-tier latency profile go in its manifest entry
(orchestration.profiles reads them back).

    manifest = build_variants(Path("artifacts/bundle"), dataset, VariantConfig(count=3))
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shared import bundle as B
from shared.datasets import Dataset
from shared.names import ModelRole
from shared.onnx_session import batch_logits, open_session
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

log = logging.getLogger(__name__)

VARIANTS_DIR = "variants"


@dataclass
class VariantConfig:
    """What `build_variants` makes."""

    count: int = 3
    """distilled variants picked from the search's Pareto front, tiny to mid-size (0: none; the family is
    then the teacher, the student, their int8 copies and the imports)."""
    max_fraction: float = 0.5
    """largest variant as a fraction of the teacher's bytes ("mid-size")."""
    distill_epochs: int | None = None
    """epochs of each variant's distillation (None: the build's `distill.epochs`)."""
    quantize: bool = True
    """add an int8 (QDQ, static, per-channel) copy of every variant and of the teacher."""
    calibration_samples: int = 256
    """validation samples that calibrate the int8 activations' ranges."""
    latency_rounds: int = 30
    """passes per latency point (median reported)."""
    device: str = "auto"
    """torch device for distillation."""
    seed: int = 0
    """seeds distillation."""
    student: bool = True
    """the bundle's own student (the edge's 675 KB-class model) is in the family too, under its own name."""
    imports: tuple[str, ...] = ()
    """classifiers of other bundles of the same dataset, as NAME=BUNDLE:MODEL (e.g.
    "alexnet=artifacts/c10-alexnet:teacher"): other families' networks, so the family spans them."""

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (0, 1], got {self.max_fraction}")
        if self.calibration_samples < 1 or self.latency_rounds < 1:
            raise ValueError("calibration_samples and latency_rounds must be >= 1, got "
                             f"{self.calibration_samples} and {self.latency_rounds}")
        for spec in self.imports:
            parse_import(spec)  # a malformed one fails here, before any work


@dataclass(frozen=True)
class Import:
    """One classifier of another bundle to add to the family."""

    name: str
    bundle: Path
    model: str


def parse_import(spec: str) -> Import:
    """NAME=BUNDLE:MODEL -> Import; ValueError naming the expected shape otherwise."""
    name, eq, rest = spec.partition("=")
    bundle, colon, model = rest.rpartition(":")
    if not (eq and colon and name and bundle and model) or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"variant import {spec!r}: expected NAME=BUNDLE:MODEL, "
                         "e.g. alexnet=artifacts/c10-alexnet:teacher")
    return Import(name=name, bundle=Path(bundle), model=model)


def _imported(spec: Import, manifest: B.Manifest) -> tuple[Path, B.ModelEntry]:
    """The other bundle's ONNX classifier, after checking it takes and answers exactly what this bundle's do."""
    other = B.load_manifest(spec.bundle, verify=True)
    if spec.model not in other.models or other.models[spec.model].file is None:
        raise B.BundleError(f"{spec.bundle}: no ONNX model {spec.model!r}; its models: {', '.join(other.models)}")
    if other.input != manifest.input or other.classes != manifest.classes:
        raise B.BundleError(f"{spec.bundle}: its input ({other.input}) or classes differ from this bundle's "
                            f"({manifest.input}); a variant must take the same normalised images")
    entry = other.models[spec.model]
    return spec.bundle / str(entry.file), entry


def read_episodes(reports_dir: Path) -> list[dict[str, Any]]:
    """The search's rows (episodes.jsonl), each evaluated student once."""
    path = Path(reports_dir) / "episodes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `edgecloud compress` (or build) first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if not row.get("cached", False)]


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows no other row beats on both size (smaller) and accuracy (higher), smallest first."""
    ordered = sorted(rows, key=lambda r: (r["student_bytes"], -r["accuracy"]))
    front: list[dict[str, Any]] = []
    for row in ordered:
        if not front or row["accuracy"] > front[-1]["accuracy"]:
            if front and row["student_bytes"] == front[-1]["student_bytes"]:
                continue
            front.append(row)
    return front


def pick_spread(front: Sequence[dict[str, Any]], count: int, *, max_bytes: int) -> list[dict[str, Any]]:
    """`count` front points nearest to log-spaced sizes from the smallest to `max_bytes`."""
    usable = [r for r in front if r["student_bytes"] <= max_bytes] or list(front[:1])
    if count == 0:
        return []
    if len(usable) <= count:
        return list(usable)
    sizes = np.log(np.array([r["student_bytes"] for r in usable], dtype=float))
    targets = np.linspace(sizes[0], sizes[-1], count)
    chosen: list[int] = []
    for target in targets:
        order = np.argsort(np.abs(sizes - target))
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return [usable[i] for i in sorted(chosen)]


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over normalised validation samples."""

    def __init__(self, x: np.ndarray, batch: int = 32) -> None:
        self._batches = [x[i:i + batch] for i in range(0, len(x), batch)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return {"input": self._batches.pop(0)} if self._batches else None

    def rewind(self) -> None:  # pragma: no cover - only some onnxruntime versions call it
        pass


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static int8 QDQ quantization of an image classifier (per-channel weights, calibrated activations)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(src), str(dst), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def onnx_predictions(path: Path, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """argmax labels of an ONNX classifier over normalised inputs, exactly as a server computes them."""
    return batch_logits(open_session(path), x, batch_size=batch).argmax(axis=1)


def _entry(*, role: ModelRole, file: str, inputs: list, outputs: list, arch: dict, accuracy: float,
           onnx_path: Path, host: dict[int, float], parameters: dict[str, Any]) -> B.ModelEntry:
    return B.ModelEntry(
        role=role, file=file, inputs=inputs, outputs=outputs, arch=arch, parameters=parameters,
        metrics={"accuracy": accuracy, "onnx_bytes": onnx_path.stat().st_size,
                 "host_ms": {str(k): v for k, v in host.items()},
                 "latency_ms": per_tier(host[1], DEFAULT_TIERS),
                 "batch_ms": per_tier(host[BATCH], DEFAULT_TIERS)})


def build_variants(bundle_dir: Path, dataset: Dataset, cfg: VariantConfig, *, distill_epochs: int,
                   progress: bool = True) -> B.Manifest:
    """Distill, export, quantize and profile the variant family; rewrite the bundle's manifest."""
    import torch

    from compression.distill import DistillConfig, distill
    from compression.export import check_parity, export_onnx
    from compression.surgery import shrink
    from networks.checkpoint import load_checkpoint
    from networks.family import model_bytes

    bundle_dir = Path(bundle_dir)
    manifest = B.load_manifest(bundle_dir, verify=True)
    teacher_entry = manifest.models[manifest.teacher]
    if teacher_entry.checkpoint is None or teacher_entry.file is None:
        raise B.BundleError(f"{bundle_dir}: the teacher needs both a checkpoint and an ONNX file for variants")
    teacher = load_checkpoint(bundle_dir / teacher_entry.checkpoint).eval()
    front = pareto_front(read_episodes(bundle_dir / B.REPORTS))
    picked = pick_spread(front, cfg.count, max_bytes=int(cfg.max_fraction * model_bytes(teacher.arch)))
    log.info("Pareto front: %d students; picked sizes %s", len(front), [r["student_bytes"] for r in picked])

    out_dir = bundle_dir / VARIANTS_DIR
    out_dir.mkdir(exist_ok=True)
    shape = tuple(manifest.input.shape)
    x_test = normalize(dataset.test.x, manifest.input.mean, manifest.input.std)
    x_cal = normalize(dataset.val.x[:cfg.calibration_samples], manifest.input.mean, manifest.input.std)
    inputs, outputs = B.image_tensors(list(shape), len(manifest.classes))
    models = {name: entry for name, entry in manifest.models.items() if entry.role is not ModelRole.VARIANT}
    correct: dict[str, np.ndarray] = {}

    def add(name: str, role: ModelRole, path: Path, arch: dict, parameters: dict[str, Any]) -> None:
        labels = onnx_predictions(path, x_test)
        correct[name] = labels == dataset.test.y
        host = measure_latency_ms(path, shape, rounds=cfg.latency_rounds)
        entry = _entry(role=role, file=str(path.relative_to(bundle_dir)), inputs=inputs, outputs=outputs,
                       arch=arch, accuracy=float(correct[name].mean()), onnx_path=path, host=host,
                       parameters=parameters)
        if role in (ModelRole.TEACHER, ModelRole.STUDENT):
            # The teacher and the student keep their checkpoint, offloader and build metrics; add the profile.
            entry = manifest.models[name].model_copy(update={"metrics": {**manifest.models[name].metrics,
                                                                         **entry.metrics}})
        models[name] = entry
        log.info("%s: accuracy %.4f, %d bytes, host %.2f ms/sample", name, entry.metrics["accuracy"],
                 entry.metrics["onnx_bytes"], host[1])

    teacher_onnx = bundle_dir / teacher_entry.file
    with_student = (cfg.student and manifest.student in manifest.models
                    and manifest.models[manifest.student].file is not None)
    steps = len(picked) + 1 + int(with_student) + len(cfg.imports)
    bar = tqdm(total=steps * (2 if cfg.quantize else 1), desc="variants", disable=not progress)
    add(manifest.teacher, ModelRole.TEACHER, teacher_onnx, teacher.arch, {})
    bar.update()
    if cfg.quantize:
        path = out_dir / f"{manifest.teacher}-int8.onnx"
        quantize_int8(teacher_onnx, path, x_cal)
        add(f"{manifest.teacher}-int8", ModelRole.VARIANT, path, teacher.arch, {"bits": 8, "from": manifest.teacher})
        bar.update()
    for index, row in enumerate(picked):
        name = f"variant-{chr(ord('a') + index)}"
        torch.manual_seed(cfg.seed)
        student = shrink(teacher, list(row["actions"]), inherit=True)
        distill(student, teacher, dataset,
                DistillConfig(epochs=distill_epochs, device=cfg.device, seed=cfg.seed), progress=False)
        student = student.cpu().eval()
        path = out_dir / f"{name}.onnx"
        export_onnx(student, path, input_shape=shape)
        check_parity(student, path, x_test[:256])  # a variant must compute what was measured
        params = {"actions": list(row["actions"]), "search_accuracy": row["accuracy"], "bits": 32}
        add(name, ModelRole.VARIANT, path, student.arch, params)
        bar.update()
        if cfg.quantize:
            qpath = out_dir / f"{name}-int8.onnx"
            quantize_int8(path, qpath, x_cal)
            add(f"{name}-int8", ModelRole.VARIANT, qpath, student.arch, {**params, "bits": 8, "from": name})
            bar.update()
    if with_student:
        entry = manifest.models[manifest.student]
        add(manifest.student, ModelRole.STUDENT, bundle_dir / str(entry.file), entry.arch, {})
        bar.update()
        if cfg.quantize:
            # The edge's own model in int8: the cheapest rung of the ladder on a device without a GPU.
            qpath = out_dir / f"{manifest.student}-int8.onnx"
            quantize_int8(bundle_dir / str(entry.file), qpath, x_cal)
            add(f"{manifest.student}-int8", ModelRole.VARIANT, qpath, entry.arch, {"bits": 8, "from": manifest.student})
            bar.update()
    for spec in map(parse_import, cfg.imports):
        src, entry = _imported(spec, manifest)
        path = out_dir / f"{spec.name}.onnx"
        shutil.copy2(src, path)
        params = {"bits": 32, "from": f"{spec.bundle}:{spec.model}"}
        add(spec.name, ModelRole.VARIANT, path, entry.arch, params)
        bar.update()
        if cfg.quantize:
            qpath = out_dir / f"{spec.name}-int8.onnx"
            quantize_int8(path, qpath, x_cal)
            add(f"{spec.name}-int8", ModelRole.VARIANT, qpath, entry.arch, {**params, "bits": 8})
            bar.update()
    bar.close()

    np.savez_compressed(out_dir / "correct.npz", **correct)
    # A device sends the image as it holds it: the dataset's own file (JPEG) where it has files.
    encoded = None if dataset.encoded is None else round(float(dataset.encoded.test_bytes.mean()))
    profile = profile_document(
        tiers=DEFAULT_TIERS, input_shape=shape, input_bytes=encoded,
        latency="median of onnxruntime passes, 1 thread, on the build host",
        pareto_front=[{"student_bytes": r["student_bytes"], "accuracy": r["accuracy"]} for r in front])
    (out_dir / "profile.json").write_text(json.dumps(profile, indent=2) + "\n")
    artifacts = {**manifest.artifacts, PROFILE_ARTIFACT: f"{VARIANTS_DIR}/profile.json",
                 CORRECT_ARTIFACT: f"{VARIANTS_DIR}/correct.npz"}
    updated = manifest.model_copy(update={"models": models, "artifacts": artifacts, "files": {}})
    B.write_manifest(bundle_dir, updated)
    return B.load_manifest(bundle_dir)
