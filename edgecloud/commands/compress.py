"""`edgecloud compress`: stage 2, RL layer removal/shrinkage, SP-KD and ONNX export."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgecloud.commands._offline import add_stage_args, load_stage, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("compress", help="stage 2: RL-compress the teacher, distil and export student.onnx",
                            description="Reads teacher.pt and reports/build.json from the bundle directory. "
                                        "--config, EDGECLOUD_BUILD__... variables and --size-budget change the "
                                        "search, distill and offload settings saved in reports/build.json "
                                        "before the stage runs.")
    add_stage_args(parser, source="train-teacher", budget=True)
    parser.add_argument("--reuse-search", action="store_true",
                        help="skip the RL search and distil the best student of the previous search again "
                             "(reports/search_best.pt), e.g. after changing the distill settings")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from edgecloud.pipeline import StageError, compress
    from edgecloud.tables import table_architecture, table_models
    from shared.datasets import DatasetError

    try:
        cfg, dataset = load_stage(args, ("search", "distill", "offload"))
        metrics = compress(args.bundle, dataset, progress=not args.no_progress, reuse_search=args.reuse_search,
                           cfg=cfg)
    except (StageError, DatasetError, ValueError) as err:
        print(f"edgecloud compress: {err}", file=sys.stderr)
        return 2
    print(table_models(metrics))
    print(table_architecture(metrics))
    return 0
