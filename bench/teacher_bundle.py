"""A teacher-only bundle for the serving benchmarks (cloud_batching, triton_compare): a ResNet-18 in ONNX.

    .venv/bin/python bench/teacher_bundle.py --dataset mnist --data-dir ../shared/data/mnist --out /tmp/mnist-w32
    .venv/bin/python bench/teacher_bundle.py --dataset mnist --data-dir ../shared/data/mnist --width 64 --out /tmp/w64
    .venv/bin/python bench/teacher_bundle.py --dataset mnist --data-dir ../shared/data/mnist \\
        --checkpoint artifacts/mnist/teacher.pt --out /tmp/mnist-trained

A server's throughput and latency depend on the graph's shape, not on its weights. Without
--checkpoint the teacher keeps its seeded initial weights, so the serving benchmarks can run at the
fast preset's teacher scale (width 32, 11 MB) and at the paper's (width 64, 44.7 MB against Zhang et
al.'s 43.7 MB) without hours of CPU training. The manifest records which it is (`metrics.note`), and
the test accuracy (on the whole test split), so nobody mistakes an untrained teacher for a trained
one. The bundle is `splitting.build.teacher_bundle`'s (no student: the cloud serves only the teacher).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from networks.checkpoint import save_checkpoint
from networks.resnet import build_model, resnet_arch
from shared.bundle import load_manifest, write_manifest
from shared.datasets import load_dataset
from splitting.build import teacher_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="digits (embedded), mnist, ... (default digits)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the dataset's files (not for digits)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write (must not exist)")
    parser.add_argument("--width", type=int, default=32, help="ResNet-18 base width without --checkpoint (32)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained teacher.pt (edgecloud train-teacher) instead of initial weights")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights (0)")
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"teacher_bundle: --out {args.out} exists; pick a new directory")

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            shape = tuple(int(d) for d in dataset.test.x.shape[1:])  # (C, H, W)
            torch.manual_seed(args.seed)
            model = build_model(resnet_arch(18, in_channels=shape[0], width=args.width, input_size=shape[1:]))
            checkpoint = Path(scratch) / "teacher.pt"
            save_checkpoint(model.eval(), checkpoint)
            note = (f"ResNet-18 width {args.width} with seeded initial weights (seed {args.seed}), not trained: "
                    "for serving benchmarks only")
        else:
            note = f"trained weights from {args.checkpoint}"
        # The project's teacher-only bundle (export, parity check, test accuracy, manifest), plus the note.
        teacher_bundle(checkpoint, args.out, dataset)
    manifest = load_manifest(args.out, verify=True)
    manifest = manifest.model_copy(update={"metrics": manifest.metrics.model_copy(update={"note": note})})
    write_manifest(args.out, manifest)
    print(f"{args.out}: teacher of {manifest.metrics.teacher_bytes:,} parameter bytes, accuracy "
          f"{manifest.metrics.teacher_accuracy:.4f} on the {args.dataset} test split ({note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
