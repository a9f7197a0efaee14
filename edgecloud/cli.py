"""The `edgecloud` command: a thin argparse tree over importable library code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order is the order `--help` lists them in.
_COMMAND_MODULES: tuple[str, ...] = (
    "build",
    "train_teacher",
    "compress",
    "train_offloader",
    "pack",
    "variants",
    "cloud",
    "edge",
    "export",
    "eval",
    "demo",
    "orchestrate",
    "split",
    "profile",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecloud",
        description=(
            "Edge-cloud cooperative DNN inference. The offline half (build, train-teacher, compress, "
            "train-offloader) writes an artifact bundle; the online half (cloud, edge) serves it over "
            "the Open Inference Protocol (export writes it for Triton and KServe); eval and demo measure the pair."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"edgecloud.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
