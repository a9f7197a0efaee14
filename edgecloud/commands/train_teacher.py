"""`edgecloud train-teacher`: stage 1 of the build."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgecloud.commands._offline import add_build_args, resolve_config, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("train-teacher", help="stage 1: train the teacher ResNet into a bundle directory",
                            description="Trains the teacher and writes teacher.pt (+ teacher.onnx) and "
                                        "reports/build.json, which the later stages read.")
    add_build_args(parser, preset_help="settings preset (default fast)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from edgecloud.pipeline import train_teacher
    from shared.datasets import DatasetError

    try:
        cfg, dataset = resolve_config(args)
        metrics = train_teacher(cfg, args.out, dataset, progress=not args.no_progress)
    except (DatasetError, ValueError) as err:
        print(f"edgecloud train-teacher: {err}", file=sys.stderr)
        return 2
    print(f"teacher: {100 * metrics['teacher_accuracy']:.2f}% test accuracy, "
          f"{metrics['teacher_params']:,} params -> {args.out}")
    return 0
