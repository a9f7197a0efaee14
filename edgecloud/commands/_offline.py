"""Arguments and set-up shared by the offline subcommands (build and its stages)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("artifacts/bundle")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits",
                        help="digits (embedded, the default), mnist, fashion-mnist, cifar10, svhn, or imagefolder "
                             "(your own train/<class>/*.jpg and test/<class>/*.jpg)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the dataset's files (not needed for digits); for cifar10 the folder of "
                             "cifar10-jpeg.tar.gz, for imagefolder a folder or .tar.gz with train/ and test/")
    parser.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                        help="resize every image to PIXELS x PIXELS (imagefolder: 32 by default)")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda if present), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seeds splits, training, search and QBC")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_budget_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-budget", type=float, default=None, metavar="FRACTION",
                        help="largest student as a fraction of the teacher's bytes, e.g. 0.02; the search "
                             "lowers sampled actions until it fits (default: the preset's: 0.05 on digits, "
                             "0.01 on MNIST-sized data)")


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="JSON",
                        help="JSON file of settings merged over the preset, in the shape of reports/build.json, "
                             'e.g. {"teacher": {"epochs": 5}, "search": {"episodes": 50}}')


def read_overrides(path: Path | None) -> dict[str, Any]:
    """The JSON object in a --config file ({} without one); ValueError naming the file otherwise."""
    import json

    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"--config {path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def resolve_config(args: argparse.Namespace, train_size: int) -> Any:
    """The BuildConfig for these CLI arguments: preset, then --config, then --size-budget."""
    from edgecloud.presets import apply_overrides, make_config

    cfg = make_config(args.preset, dataset=args.dataset, train_size=train_size, seed=args.seed, device=args.device)
    if args.config is not None:
        cfg = apply_overrides(cfg, read_overrides(args.config))
    if args.size_budget is not None:
        cfg.search.size_budget = args.size_budget
    if getattr(args, "image_size", None) is not None:
        cfg.image_size = args.image_size
    return cfg


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
