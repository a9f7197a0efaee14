"""`edgecloud build`: every offline stage, teacher to bundle."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from edgecloud.commands._offline import add_build_args, resolve_config, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "build",
        help="train the teacher, RL-compress and distil the student, train the offloader, write a bundle",
        description=(
            "Runs train-teacher, compress and train-offloader in one go and writes the artifact bundle "
            "(manifest.json, student.onnx, offloader.pkl, teacher.pt/.onnx, reports/). Example: "
            "edgecloud build --dataset mnist --data-dir ../shared/data/mnist --out artifacts/mnist"
        ),
    )
    add_build_args(parser,
                   preset_help="fast: CPU-sized (default); paper: ResNet-18 at width 64, long search/distillation")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from edgecloud.pipeline import build
    from edgecloud.tables import summary
    from shared.bundle import BundleError
    from shared.datasets import DatasetError

    started = time.perf_counter()
    try:
        cfg, dataset = resolve_config(args)
        manifest = build(cfg, args.out, dataset, progress=not args.no_progress)
    except (DatasetError, BundleError, ValueError) as err:
        print(f"edgecloud build: {err}", file=sys.stderr)
        return 2
    print(summary(args.out))
    m = manifest.metrics
    print(f"bundle: {args.out}  ({time.perf_counter() - started:.0f} s)")
    print(f"teacher {100 * m.teacher_accuracy:.2f}%  student {100 * m.student_accuracy:.2f}%  "
          f"offload threshold {manifest.operating_point.threshold:.4f} "
          f"(val offload rate {100 * manifest.operating_point.val_offload_rate:.1f}%)")
    return 0
