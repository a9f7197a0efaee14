"""Arguments and set-up shared by the offline subcommands (build and its stages)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DEFAULT_OUT = Path("artifacts/bundle")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits",
                        help="digits (embedded, the default), mnist, fashion-mnist, cifar10 or svhn")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the dataset's original files (not needed for digits)")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda if present), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seeds splits, training, search and QBC")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
