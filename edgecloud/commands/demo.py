"""`edgecloud demo`: the three systems on natural images from the pretrained bundles; `--build` trains one."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

PARTS = ("cooperation", "split", "orchestration")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="the three systems on 1,000 CIFAR-10 images from the pretrained bundles (or --build: from scratch)",
        description="Without --build: serves the pretrained CIFAR-10 bundle (models/cifar10) with a real cloud "
                    "server and edge agent on loopback and runs edge-only / cloud-only / cooperation on the 1,000 "
                    "embedded test JPEGs (data/cifar10-sample), then simulates split inference and 8-user "
                    "orchestration over two cellular uplink traces from their bundles. Nothing is downloaded or "
                    "trained. With --build: trains a digits bundle from scratch (the offline half; needs torch), "
                    "serves and evaluates it.",
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo"), help="working directory")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--build", action="store_true",
                        help="train the digits bundle from scratch (cached in OUT/bundle) instead of the pretrained "
                             "CIFAR-10 demo")
    parser.add_argument("--rebuild", action="store_true", help="with --build: rebuild even if a bundle is cached")
    parser.add_argument("--seed", type=int, default=0, help="with --build: seed for the build and the splits")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def _build(args: argparse.Namespace) -> int:
    from edgecloud.demo import DemoError, run_build_demo
    from edgecloud.evaluation.report import table
    from edgecloud.tables import bundle_lines
    from shared.bundle import load_manifest

    try:
        report = run_build_demo(args.out, seed=args.seed, progress=not args.no_progress, rebuild=args.rebuild)
    except (DemoError, RuntimeError, TimeoutError) as err:
        print(f"edgecloud demo: {err}", file=sys.stderr)
        return 1
    print()
    print(table(report))
    bundle = args.out / "bundle"
    print("\n".join(["", *bundle_lines(bundle, load_manifest(bundle))]))
    print(f"\nreport: {args.out / 'eval' / 'report.md'}")
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # One INFO line per HTTP request from the evaluation client would bury the progress bars and the table.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.build:
        return _build(args)
    from edgecloud.demo import DemoError, DemoInputs, run_cooperation
    from edgecloud.evaluation.report import cooperation_lines, table

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"edgecloud demo: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    inputs = DemoInputs()
    try:
        if "cooperation" in parts:
            report = run_cooperation(inputs, args.out, progress=not args.no_progress)
            print("\n## 1. Cooperative inference (Zhang et al.): 1,000 CIFAR-10 test images, live cloud and edge\n")
            print(table(report))
            print("\n".join(["", *cooperation_lines(report)]))
            print(f"report and plots: {args.out / 'cooperation'}")
        if "split" in parts:
            from edgecloud.demo_sim import TRACES, run_split

            result = run_split(inputs.split, args.out / "split")
            print(f"\n## 2. Split inference (Niu et al.): emulated Pi 4, cellular uplinks ({TRACES.name})\n")
            print(result.table)
            print(f"plots: {', '.join(str(p) for p in result.plots)}")
        if "orchestration" in parts:
            from edgecloud.demo_sim import ORCHESTRATION_USERS, run_orchestration

            result = run_orchestration(inputs.variants, args.out / "orchestration")
            print(f"\n## 3. Orchestration (Shahhosseini et al.): {ORCHESTRATION_USERS} users, end / edge / cloud, "
                  "requirements that switch\n")
            print(result.table)
            print(f"plots: {', '.join(str(p) for p in result.plots)}")
    except (DemoError, RuntimeError, TimeoutError, ValueError) as err:
        print(f"edgecloud demo: {err}", file=sys.stderr)
        return 1
    return 0
