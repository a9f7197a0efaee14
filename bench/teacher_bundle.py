"""A teacher-only bundle for the serving benchmarks (cloud_batching, triton_compare): a ResNet-18 in ONNX.

    .venv/bin/python bench/teacher_bundle.py --dataset mnist --data-dir ../shared/data/mnist --out /tmp/mnist-w32
    .venv/bin/python bench/teacher_bundle.py --dataset mnist --data-dir ../shared/data/mnist --width 64 --out /tmp/w64
    .venv/bin/python bench/teacher_bundle.py --dataset mnist --data-dir ../shared/data/mnist \\
        --checkpoint artifacts/mnist/teacher.pt --out /tmp/mnist-trained

A server's throughput and latency depend on the graph's shape, not on its weights. Without
--checkpoint the teacher keeps its seeded initial weights, so the serving benchmarks can run at the
fast preset's teacher scale (width 32, 11 MB) and at the paper's (width 64, 44.7 MB against Zhang et
al.'s 43.7 MB) without hours of CPU training. The manifest records which it is (`metrics.note`), and
the test accuracy measured on the first --eval-samples test samples, so nobody mistakes an untrained
teacher for a trained one. The bundle has no student: the cloud serves only the teacher.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from compression.export import export_onnx
from networks.checkpoint import load_checkpoint, save_checkpoint
from networks.resnet import build_model, resnet_arch
from shared.bundle import InputSpec, Manifest, Metrics, ModelEntry, image_tensors, write_manifest
from shared.datasets import load_dataset
from shared.names import ModelRole
from shared.preprocess import normalize


def _accuracy(onnx_path: Path, x: np.ndarray, y: np.ndarray, mean: list[float], std: list[float]) -> float:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = 0
    for start in range(0, len(x), 500):
        logits = session.run(None, {name: normalize(x[start:start + 500], mean, std)})[0]
        correct += int((logits.argmax(1) == y[start:start + 500]).sum())
    return correct / max(1, len(x))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="digits (embedded), mnist, ... (default digits)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the dataset's files (not for digits)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write (must not exist)")
    parser.add_argument("--width", type=int, default=32, help="ResNet-18 base width without --checkpoint (32)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained teacher.pt (edgecloud train-teacher) instead of initial weights")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights (0)")
    parser.add_argument("--eval-samples", type=int, default=2000,
                        help="test samples the recorded accuracy is measured on (2000)")
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"teacher_bundle: --out {args.out} exists; pick a new directory")

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    shape = tuple(int(d) for d in dataset.test.x.shape[1:])  # (C, H, W)
    args.out.mkdir(parents=True)
    if args.checkpoint is not None:
        model = load_checkpoint(args.checkpoint).eval()
        shutil.copy(args.checkpoint, args.out / "teacher.pt")
        note = f"trained weights from {args.checkpoint}"
    else:
        torch.manual_seed(args.seed)
        model = build_model(resnet_arch(18, in_channels=shape[0], width=args.width, input_size=shape[1:])).eval()
        save_checkpoint(model, args.out / "teacher.pt")
        note = (f"ResNet-18 width {args.width} with seeded initial weights (seed {args.seed}), not trained: "
                "for serving benchmarks only")
    export_onnx(model, args.out / "teacher.onnx", input_shape=shape)
    n = min(args.eval_samples, len(dataset.test.x))
    mean, std = list(dataset.mean), list(dataset.std)
    accuracy = _accuracy(args.out / "teacher.onnx", dataset.test.x[:n], dataset.test.y[:n], mean, std)
    inputs, outputs = image_tensors(list(shape), len(dataset.classes))
    manifest = Manifest(
        dataset=args.dataset,
        input=InputSpec(shape=list(shape), dtype="uint8", mean=mean, std=std),
        classes=[str(c) for c in dataset.classes],
        models={"teacher": ModelEntry(role=ModelRole.TEACHER, file="teacher.onnx", checkpoint="teacher.pt",
                                      inputs=inputs, outputs=outputs, metrics={"accuracy": accuracy})},
        metrics=Metrics(teacher_accuracy=accuracy, teacher_bytes=(args.out / "teacher.onnx").stat().st_size,
                        note=f"{note}; accuracy on the first {n} test samples"),
    )
    write_manifest(args.out, manifest)
    print(f"{args.out}: teacher.onnx {manifest.metrics.teacher_bytes:,} bytes, accuracy {accuracy:.4f} on the "
          f"first {n} {args.dataset} test samples ({note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
