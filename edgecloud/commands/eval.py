"""`edgecloud eval`: edge-only, cloud-only and cooperation against live services (Table VII)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "eval",
        help="measure edge-only, cloud-only and cooperation on a test split through live services",
        description="Streams the dataset's test split through a running edge agent (which offloads to a running "
                    "cloud server) once per strategy and writes report.md, report.json and plots to --out.",
    )
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle both services serve")
    parser.add_argument("--edge-url", required=True, help="edge agent base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--cloud-url", default=None, help="cloud server base URL (checked for readiness)")
    parser.add_argument("--dataset", default=None, help="dataset name (default: the bundle's)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/eval"), help="report directory")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per request (default 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test samples")
    parser.add_argument("--strategies", default="edge_only,cloud_only,cooperation",
                        help="comma-separated subset of edge_only, cloud_only, cooperation")
    parser.add_argument("--seed", type=int, default=0, help="split seed (must match the build's)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgecloud.evaluation.report import table
    from edgecloud.evaluation.run import EvalConfig, run_eval
    from shared.bundle import BundleError, load_manifest
    from shared.datasets import DatasetError, Split, load_dataset

    try:
        manifest = load_manifest(args.bundle)
        name = args.dataset or manifest.dataset
        test = load_dataset(name, data_dir=args.data_dir, seed=args.seed).test
        if args.limit is not None:
            test = Split(x=test.x[: args.limit], y=test.y[: args.limit])
        cfg = EvalConfig(edge_url=args.edge_url, cloud_url=args.cloud_url, batch_size=args.batch_size,
                         concurrency=args.concurrency, strategies=tuple(args.strategies.split(",")))
        report = run_eval(args.bundle, test, cfg, args.out, dataset=name, progress=not args.no_progress)
    except (BundleError, DatasetError, ValueError, TimeoutError) as err:
        print(f"edgecloud eval: {err}", file=sys.stderr)
        return 2
    print(table(report))
    print(f"report: {args.out / 'report.md'}")
    return 0
