"""`edgecloud train-offloader`: stage 3, the QBC-trained SL offloader and the manifest."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgecloud.commands._offline import add_stage_args, load_stage, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("train-offloader",
                            help="stage 3: train the SL offloader (QBC), pick the operating point, write the manifest",
                            description="Reads student.onnx and teacher.pt from the bundle directory. With "
                                        "fit_source crossfit (the default) it first distils K fold students "
                                        "from reports/search_best.pt, or reuses their cached logits. --config "
                                        'changes the offload settings, e.g. {"offload": {"rule": "boundary"}}.')
    add_stage_args(parser, source="compress")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from edgecloud.pipeline import StageError, train_offloader
    from edgecloud.tables import summary
    from shared.bundle import BundleError
    from shared.datasets import DatasetError

    try:
        cfg, dataset = load_stage(args, ("offload",))
        train_offloader(args.bundle, dataset, progress=not args.no_progress, cfg=cfg)
    except (StageError, DatasetError, BundleError, ValueError) as err:
        print(f"edgecloud train-offloader: {err}", file=sys.stderr)
        return 2
    print(summary(args.bundle))
    return 0
