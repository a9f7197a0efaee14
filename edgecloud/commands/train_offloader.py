"""`edgecloud train-offloader`: stage 3, the QBC-trained SL offloader and the manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgecloud.commands._offline import DEFAULT_OUT, add_config_arg, config_layers, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("train-offloader",
                            help="stage 3: train the SL offloader (QBC), pick the operating point, write the manifest",
                            description="Reads student.onnx and teacher.pt from the bundle directory. With "
                                        "fit_source crossfit (the default) it first distils K fold students "
                                        "from reports/search_best.pt, or reuses their cached logits. --config "
                                        'changes the offload settings, e.g. {"offload": {"rule": "boundary"}}.')
    parser.add_argument("--bundle", type=Path, default=DEFAULT_OUT, help="bundle directory from compress")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    add_config_arg(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from edgecloud.pipeline import StageError, load_data, train_offloader, update_config
    from edgecloud.tables import summary
    from shared.bundle import BundleError
    from shared.datasets import DatasetError

    try:
        cfg = update_config(args.bundle, config_layers(args), sections=("offload",))
        dataset = load_data(cfg, args.data_dir)
        train_offloader(args.bundle, dataset, progress=not args.no_progress, cfg=cfg)
    except (StageError, DatasetError, BundleError, ValueError) as err:
        print(f"edgecloud train-offloader: {err}", file=sys.stderr)
        return 2
    print(summary(args.bundle))
    return 0
