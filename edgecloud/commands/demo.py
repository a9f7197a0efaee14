"""`edgecloud demo`: the main job on the embedded digits dataset."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="build the digits bundle (cached), start cloud and edge, evaluate, print the table",
        description="The whole system on the embedded digits dataset: builds the bundle once (reused after), "
                    "starts the cloud server and the edge agent on free loopback ports, runs the edge-only / "
                    "cloud-only / cooperation evaluation and shuts both down, also on Ctrl-C.",
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo"), help="working directory")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the bundle even if one is cached")
    parser.add_argument("--seed", type=int, default=0, help="seed for the build and the splits")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # One INFO line per HTTP request from the evaluation client would bury the progress bars and the table.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from edgecloud.demo import run_demo
    from edgecloud.evaluation.report import table
    from edgecloud.tables import bundle_lines
    from shared.bundle import load_manifest

    try:
        report = run_demo(args.out, seed=args.seed, progress=not args.no_progress, rebuild=args.rebuild)
    except (RuntimeError, TimeoutError) as err:
        print(f"edgecloud demo: {err}", file=sys.stderr)
        return 1
    print()
    print(table(report))
    bundle = args.out / "bundle"
    print("\n".join(["", *bundle_lines(bundle, load_manifest(bundle))]))
    print(f"\nreport: {args.out / 'eval' / 'report.md'}")
    return 0
