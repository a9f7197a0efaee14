"""What the edge benchmarks share (decision_cost.py, edge_overhead.py): their flags and their test samples."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from shared.bundle import load_manifest
from shared.datasets import load_dataset


def edge_parser(description: str | None, *, threads_help: str, repeats: int,
                repeats_help: str | None = None) -> argparse.ArgumentParser:
    """--bundle, --dataset, --data-dir, --batch-size, --threads, --limit and --repeats (default ``repeats``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--dataset", help="default: the bundle's dataset")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help=threads_help)
    parser.add_argument("--limit", type=int, help="only the first N test samples")
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    return parser


def load_test_samples(args: argparse.Namespace) -> tuple[str, np.ndarray, np.ndarray]:
    """The dataset's name (--dataset, or the bundle's) and its test split's first --limit images and labels."""
    dataset = args.dataset or load_manifest(args.bundle).dataset
    test = load_dataset(dataset, data_dir=args.data_dir).test
    return dataset, test.x[: args.limit], test.y[: args.limit]
