"""`edgecloud compress`: stage 2, RL layer removal/shrinkage, SP-KD and ONNX export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgecloud.commands._offline import DEFAULT_OUT, add_budget_arg, add_config_arg, config_layers, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("compress", help="stage 2: RL-compress the teacher, distil and export student.onnx",
                            description="Reads teacher.pt and reports/build.json from the bundle directory. "
                                        "--config, EDGECLOUD_BUILD__... variables and --size-budget change the "
                                        "search, distill and offload settings saved in reports/build.json "
                                        "before the stage runs.")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_OUT, help="bundle directory from train-teacher")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--reuse-search", action="store_true",
                        help="skip the RL search and distil the best student of the previous search again "
                             "(reports/search_best.pt), e.g. after changing the distill settings")
    add_budget_arg(parser)
    add_config_arg(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from edgecloud.pipeline import StageError, compress, load_data, update_config
    from edgecloud.tables import table_architecture, table_models
    from shared.datasets import DatasetError

    try:
        cfg = update_config(args.bundle, config_layers(args), sections=("search", "distill", "offload"))
        dataset = load_data(cfg, args.data_dir)
        metrics = compress(args.bundle, dataset, progress=not args.no_progress, reuse_search=args.reuse_search,
                           cfg=cfg)
    except (StageError, DatasetError, ValueError) as err:
        print(f"edgecloud compress: {err}", file=sys.stderr)
        return 2
    print(table_models(metrics))
    print(table_architecture(metrics))
    return 0
