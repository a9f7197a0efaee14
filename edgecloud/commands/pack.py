"""`edgecloud pack`: a built bundle made small for the repository, its figures measured again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "pack", help="copy a bundle without caches and checkpoints, optionally with fp16 weights, re-measured",
        description="Writes OUT with every file the manifest references (torch checkpoints only with "
                    "--keep-checkpoints), the reports people read, and the ONNX models named by --fp16 stored in "
                    "float16 (computing in float32). Then measures the manifest's figures again on the test split "
                    "with the packed files and records them, with any change, under metrics.packed. Example: "
                    "edgecloud pack --bundle artifacts/cifar10 --out models/cifar10 --fp16 teacher "
                    "--data-dir ../shared/data/cifar10")
    parser.add_argument("--bundle", type=Path, required=True, help="the built bundle")
    parser.add_argument("--out", type=Path, required=True, help="new directory for the packed bundle")
    parser.add_argument("--fp16", default="", help="comma-separated models to store in float16 (e.g. teacher)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep torch checkpoints (teacher.pt)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the bundle's dataset (not needed for digits)")
    parser.add_argument("--rebuild", default=None, metavar="COMMAND",
                        help="the command that rebuilds the source bundle, recorded in the manifest")
    parser.add_argument("--seed", type=int, default=0, help="the dataset's split seed (the build's)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from compression.pack import pack
    from shared.bundle import BundleError, load_manifest
    from shared.datasets import DatasetError, load_for_bundle

    try:
        test = load_for_bundle(load_manifest(args.bundle), data_dir=args.data_dir, seed=args.seed).test
        packed = pack(args.bundle, args.out, test=test, fp16=[m for m in args.fp16.split(",") if m],
                      keep_checkpoints=args.keep_checkpoints, rebuild_command=args.rebuild)
    except (BundleError, DatasetError, ValueError) as err:
        print(f"edgecloud pack: {err}", file=sys.stderr)
        return 2
    total = sum(f.bytes for f in packed.files.values())
    changed = packed.metrics.model_dump()["packed"]["changed_figures"]
    print(f"{args.out}: {len(packed.files)} files, {total / 1e6:.2f} MB referenced by the manifest")
    for name, delta in changed.items():
        print(f"  {name}: {delta['built']:.4f} built -> {delta['packed']:.4f} packed")
    if not changed:
        print("  every figure of the manifest is unchanged on the test split")
    return 0
