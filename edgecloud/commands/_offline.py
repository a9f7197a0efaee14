"""Arguments and set-up shared by the offline subcommands (build and its stages)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("artifacts/bundle")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None,
                        help="digits (embedded, the default), mnist, fashion-mnist, cifar10, svhn, or imagefolder "
                             "(your own train/<class>/*.jpg and test/<class>/*.jpg)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the dataset's files (not needed for digits); for cifar10 the folder of "
                             "cifar10-jpeg.tar.gz, for imagefolder a folder or .tar.gz with train/ and test/")
    parser.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                        help="resize every image to PIXELS x PIXELS (imagefolder: 32 by default)")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device: auto (cuda if present; the default), cpu or cuda")
    parser.add_argument("--seed", type=int, default=None, help="seeds splits, training, search and QBC (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_budget_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-budget", type=float, default=None, metavar="FRACTION",
                        help="largest student as a fraction of the teacher's bytes, e.g. 0.02; the search "
                             "lowers sampled actions until it fits (default: the preset's: 0.05 on digits, "
                             "0.01 on MNIST-sized data)")


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="JSON",
                        help="JSON file of settings merged over the preset, in the shape of reports/build.json, "
                             'e.g. {"teacher": {"epochs": 5}, "search": {"episodes": 50}}; variables '
                             "EDGECLOUD_BUILD__<SECTION>__<FIELD> (e.g. EDGECLOUD_BUILD__TEACHER__EPOCHS=5) go over "
                             "the file, flags over both")


def add_build_args(parser: argparse.ArgumentParser, *, preset_help: str) -> None:
    """The flags of a run that starts from a dataset (build, train-teacher): the data, the bundle it
    writes, the preset, the size budget, the layers over the preset, device, seed and progress."""
    add_dataset_args(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle directory")
    parser.add_argument("--preset", default=None, choices=("fast", "paper"), help=preset_help)
    add_budget_arg(parser)
    add_config_arg(parser)
    add_common_args(parser)


def add_stage_args(parser: argparse.ArgumentParser, *, source: str, budget: bool = False) -> None:
    """The flags of a later stage (compress, train-offloader), which reads the bundle ``source`` wrote:
    the bundle, its dataset's folder, the size budget if ``budget``, the layers and progress."""
    parser.add_argument("--bundle", type=Path, default=DEFAULT_OUT, help=f"bundle directory from {source}")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    if budget:
        add_budget_arg(parser)
    add_config_arg(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


BUILD_FLAGS: dict[str, str] = {"dataset": "dataset", "preset": "preset", "seed": "seed", "device": "device",
                               "image_size": "image_size", "search.size_budget": "size_budget"}
"""The build setting each flag sets (dotted path -> argparse dest); a stage has those of its flags."""


def config_layers(args: argparse.Namespace) -> list[Any]:
    """The layers over the preset (or a bundle's saved settings): --config, EDGECLOUD_BUILD__..., flags."""
    from shared.run_config import Scope, env_layer, file_layer, flag_layer

    return [file_layer(getattr(args, "config", None)), env_layer(Scope.BUILD), flag_layer(args, BUILD_FLAGS)]


def resolve_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """The BuildConfig for these CLI arguments and the dataset it is sized for: the preset (for the
    dataset the layers name), then --config, EDGECLOUD_BUILD__... variables and flags over it."""
    from edgecloud.presets import make_config, resolve_build
    from shared.datasets import load_dataset

    layers = config_layers(args)
    named = resolve_build(layers)  # what the layers say, over the defaults: which dataset, preset and seed
    dataset = load_dataset(named.dataset, data_dir=args.data_dir, seed=named.seed, image_size=named.image_size)
    preset = make_config(named.preset, dataset=named.dataset, train_size=len(dataset.train.y), seed=named.seed,
                         device=named.device)
    return resolve_build(layers, base=preset), dataset


def load_stage(args: argparse.Namespace, sections: tuple[str, ...]) -> tuple[Any, Any]:
    """A later stage's BuildConfig (the bundle's saved settings, ``sections`` of it changed by --config,
    EDGECLOUD_BUILD__... variables and flags) and the dataset it names."""
    from edgecloud.pipeline import load_data, update_config

    cfg = update_config(args.bundle, config_layers(args), sections=sections)
    return cfg, load_data(cfg, args.data_dir)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
