"""`edgecloud split build`: a bundle's teacher -> multi-branch net -> segments, accuracy, manifest (torch).

    edgecloud split build --bundle artifacts/mnist --out artifacts/mnist-split --data-dir ../shared/data/mnist

Copies the source bundle to `out` (unless they are the same), trains exit heads and bottlenecks on
the frozen teacher (splitting/train.py says why frozen), exports head_p / tail_p for every
partition point with their composition checked against the torch net, measures every valid
(exit, partition, bits) on the validation and test splits through the real codec, and adds it all
to the manifest: models `head_p` (role split_head) and `tail_p` (split_tail) with their parameters,
artifacts `split_accuracy` (JSON table) and `split_correct` (per-sample correctness, test split).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from networks.checkpoint import load_checkpoint, save_checkpoint
from networks.multibranch import MultiBranchNet, feature_shape, multibranch_arch, stage_shapes
from shared import bundle as B
from shared.datasets import Dataset
from shared.names import ModelRole
from shared.preprocess import normalize
from splitting.accuracy import accuracy_table, action_correctness
from splitting.actions import ActionSpace
from splitting.export import check_composition, export_head, export_tail, head_outputs, tail_outputs
from splitting.inputs import write_input_bytes
from splitting.segments import SegmentRunner, SplitPlan, head_name, segment_parameters, tail_name
from splitting.setup import ACCURACY_JSON, ARTIFACT_ACCURACY, ARTIFACT_CORRECT, CORRECT_NPZ, SPLIT_DIR
from splitting.train import SplitTrainConfig, train_branches

log = logging.getLogger(__name__)

CHECKPOINT = f"{SPLIT_DIR}/multibranch.pt"


def copy_bundle(src: Path, out: Path) -> None:
    """Copy bundle `src` to `out`; refuses an `out` that already holds something else."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if src == out:
        return
    if out.exists() and any(out.iterdir()):
        raise B.BundleError(f"{out}: exists and is not empty; choose a new --out (or --out {src} to add in place)")
    shutil.copytree(src, out, dirs_exist_ok=True)


def teacher_bundle(teacher_pt: Path, out: Path, dataset: Dataset) -> Path:
    """A bundle holding only a teacher checkpoint (e.g. `edgecloud train-teacher`'s), for a split of its own.

    Exports teacher.onnx (parity-checked), measures its test accuracy and writes a manifest with the
    teacher alone; `build_split(out, out, ...)` then adds the segments.
    """
    from compression.export import check_parity, export_onnx
    from compression.teacher import predict_logits
    from networks.family import model_bytes
    from shared.datasets import input_spec

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise B.BundleError(f"{out}: exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(teacher_pt, out / B.TEACHER_PT)
    teacher = load_checkpoint(out / B.TEACHER_PT)
    spec = B.InputSpec(**input_spec(dataset))
    export_onnx(teacher, out / B.TEACHER_ONNX, input_shape=tuple(spec.shape))
    check_parity(teacher, out / B.TEACHER_ONNX, normalize(dataset.val.x[:64], spec.mean, spec.std))
    accuracy = float((predict_logits(teacher, dataset.test.x, spec.mean, spec.std).argmax(1) == dataset.test.y).mean())
    inputs, outputs = B.image_tensors(spec.shape, len(dataset.classes))
    entry = B.ModelEntry(role=ModelRole.TEACHER, file=B.TEACHER_ONNX, checkpoint=B.TEACHER_PT, inputs=inputs,
                         outputs=outputs, arch=teacher.arch,
                         metrics={"accuracy": accuracy, "bytes": model_bytes(teacher.arch)})
    manifest = B.Manifest(dataset=dataset.name, input=spec, classes=list(dataset.classes), models={B.TEACHER: entry},
                          metrics=B.Metrics(teacher_accuracy=accuracy, teacher_bytes=model_bytes(teacher.arch)))
    B.write_manifest(out, manifest)
    return out


def _tensor(name: str, datatype: str, shape: list[int]) -> B.TensorSpec:
    return B.TensorSpec(name=name, datatype=datatype, shape=shape)


def build_split(src: Path, out: Path, dataset: Dataset, *, cfg: SplitTrainConfig | None = None,
                bottleneck_channels: int | None = 4, progress: bool = True) -> B.Manifest:
    """Everything above; returns the written manifest."""
    cfg = cfg or SplitTrainConfig()
    src_manifest = B.load_manifest(src)
    if src_manifest.dataset != dataset.name:
        raise ValueError(f"bundle {src} was built on {src_manifest.dataset!r}, not {dataset.name!r}")
    copy_bundle(src, out)
    out = Path(out)
    manifest = B.load_manifest(out)
    teacher_entry = manifest.models[manifest.teacher]
    if teacher_entry.checkpoint is None:
        raise B.BundleError(f"{out}: teacher {manifest.teacher!r} has no torch checkpoint to build a split from")
    teacher = load_checkpoint(B.verify_file(out, manifest, teacher_entry.checkpoint))
    arch = multibranch_arch(teacher.arch, bottleneck_channels=bottleneck_channels)
    net = MultiBranchNet(arch, backbone=teacher)
    mean, std = manifest.input.mean, manifest.input.std  # the teacher's own normalisation
    # A stopped training resumes after its last epoch (compression/resume.py) when started again.
    history = train_branches(net, dataset, cfg, mean=mean, std=std, progress=progress,
                             state_path=out / SPLIT_DIR / "train_state.pt")
    net.eval()
    save_checkpoint(net, out / CHECKPOINT, history=history)  # type: ignore[arg-type]  # any module with .arch

    n = net.n_stages
    probe = normalize(dataset.val.x[:64], mean, std)
    models = {name: e for name, e in manifest.models.items()
              if e.role not in (ModelRole.SPLIT_HEAD, ModelRole.SPLIT_TAIL)}
    composition: dict[str, float] = {}
    c, h, w = manifest.input.shape
    for p in range(1, n + 1):
        head_file = f"{SPLIT_DIR}/{head_name(p)}.onnx"
        export_head(net, p, out / head_file)
        tail_file = None
        shape = feature_shape(arch, p) if p < n else None
        if p < n:
            tail_file = f"{SPLIT_DIR}/{tail_name(p)}.onnx"
            export_tail(net, p, out / tail_file)
        composition[str(p)] = check_composition(net, p, out / head_file, out / tail_file if tail_file else None,
                                                probe)
        exits_before = [s for s in net.exit_after if s <= p]
        head_outs = [_tensor(o, "FP32", [-1, arch["backbone"]["num_classes"]]) for o in head_outputs(net, p)
                     if o != "feature"]
        if shape is not None:
            head_outs.append(_tensor("feature", "FP32", [-1, *shape]))
        models[head_name(p)] = B.ModelEntry(
            role=ModelRole.SPLIT_HEAD, file=head_file, takes="raw_image",
            inputs=[_tensor("input", "FP32", [-1, c, h, w])], outputs=head_outs, arch=arch,
            parameters=segment_parameters(partition=p, exits=exits_before, feature_shape=shape))
        if p < n:
            assert shape is not None and tail_file is not None
            models[tail_name(p)] = B.ModelEntry(
                role=ModelRole.SPLIT_TAIL, file=tail_file, takes="tensor",
                inputs=[_tensor("feature", "FP32", [-1, *shape])],
                outputs=[_tensor(o, "FP32", [-1, arch["backbone"]["num_classes"]]) for o in tail_outputs(net, p)],
                arch=arch, parameters=segment_parameters(partition=p, exits=[s for s in net.exit_after if s > p],
                                                         feature_shape=shape))
    staged = manifest.model_copy(update={"models": models})
    B.write_manifest(out, staged)  # hashes the segments so the runner can verify them
    staged = B.load_manifest(out)

    space = ActionSpace(n)
    plan = SplitPlan.from_manifest(staged)
    runner = SegmentRunner(out, manifest=staged, heads=range(1, n + 1), tails=range(1, n))
    payload = {int(i): plan.payload_bytes(space.actions[i].partition, space.actions[i].bits)
               for i in space.valid_indices()}
    val_correct = action_correctness(runner, space, normalize(dataset.val.x, mean, std), dataset.val.y)
    test_correct = action_correctness(runner, space, normalize(dataset.test.x, mean, std), dataset.test.y)
    table = accuracy_table(space, val_correct, test_correct, payload)
    raw_features = {str(p): {"shape": list(stage_shapes(arch["backbone"])[p - 1]),
                             "bytes_8bit": int(np.prod(stage_shapes(arch["backbone"])[p - 1]))}
                    for p in range(1, n)}
    report: dict[str, Any] = {
        "n_stages": n, "bits": list(space.bits), "actions": table, "composition_max_abs_diff": composition,
        "raw_input_bytes": int(np.prod(manifest.input.shape)), "features_without_bottleneck": raw_features,
        "train": {"config": asdict(cfg), "history": history, "bottleneck_channels": bottleneck_channels,
                  "scheme": "frozen backbone (teacher), heads and bottlenecks trained by distillation"},
    }
    (out / ACCURACY_JSON).write_text(json.dumps(report, indent=2) + "\n")
    np.savez_compressed(out / CORRECT_NPZ, correct=test_correct, labels=dataset.test.y)
    artifacts = {**staged.artifacts, ARTIFACT_ACCURACY: ACCURACY_JSON, ARTIFACT_CORRECT: CORRECT_NPZ}
    final = staged.model_copy(update={"artifacts": artifacts})
    B.write_manifest(out, final)
    if dataset.encoded is not None:
        # What a device holds is the file, not its pixels: the JPEG server-only baseline uploads these sizes.
        write_input_bytes(out, dataset.encoded.test_bytes, source=dataset.encoded.source,
                          samples=dataset.encoded.test_head)
    return B.load_manifest(out)
