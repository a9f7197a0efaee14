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
    parser.add_argument("--edge-url", default=None,
                        help="edge agent base URL, e.g. http://127.0.0.1:8000 (required without --link)")
    parser.add_argument("--cloud-url", default=None, help="cloud server base URL (checked for readiness)")
    parser.add_argument("--link", default=None, metavar="PROFILE",
                        help="start the cloud and the edge on either side of an emulated link (lan, wifi, lte, 3g; "
                             "needs root, see deploy/testbed/README.md) instead of using --edge-url")
    parser.add_argument("--link-delay", choices=("auto", "netem", "shim"), default="auto",
                        help="with --link: netem if the kernel has it (auto), else the EMULATED delay proxy (shim)")
    parser.add_argument("--link-name", default=None, help="with --link: tag of the namespaces (ectb-NAME-edge/-cloud)")
    parser.add_argument("--edge-cpus", default=None, metavar="CORES",
                        help="with --link: pin the edge agent to these cores, e.g. 0 (as on a device of its own)")
    parser.add_argument("--cloud-cpus", default=None, metavar="CORES",
                        help="with --link: pin the cloud server to these cores, e.g. 1 (so its compute "
                             "does not slow the edge, as on two machines)")
    parser.add_argument("--no-link-check", action="store_true",
                        help="with --link: skip measuring the link's RTT and goodput before the evaluation")
    parser.add_argument("--dataset", default=None, help="dataset name (default: the bundle's)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/eval"), help="report directory")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per request (default 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the strategies N times, interleaved, and report each one's median-runtime run "
                             "(default 1; use 3 or 5 on a shared or noisy machine)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test samples")
    parser.add_argument("--payload", choices=("auto", "files", "pixels"), default="auto",
                        help="what a request carries: the test images' files (OIP BYTES, as a device holds "
                             "them; the edge forwards offloads as they are), or raw uint8 pixels; auto: files "
                             "where the dataset has them (image folders such as cifar10), else pixels")
    parser.add_argument("--strategies", default="edge_only,cloud_only,cooperation",
                        help="comma-separated subset of edge_only, cloud_only, cooperation")
    parser.add_argument("--seed", type=int, default=0, help="split seed (must match the build's)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def _eval_args(args: argparse.Namespace) -> list[str]:
    """This command's options again, for the evaluation client that `--link` runs inside the edge namespace."""
    argv = ["--batch-size", str(args.batch_size), "--concurrency", str(args.concurrency), "--repeat", str(args.repeat),
            "--strategies", args.strategies, "--seed", str(args.seed), "--payload", args.payload]
    for flag, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir), ("--limit", args.limit)):
        if value is not None:
            argv += [flag, str(Path(value).resolve()) if flag == "--data-dir" else str(value)]
    return argv + (["--no-progress"] if args.no_progress else [])


def run_over_link(args: argparse.Namespace) -> int:
    from edgecloud.evaluation.over_link import eval_over_link
    from edgecloud.evaluation.report import link_line
    from testbed.netns import TestbedError, parse_cpus
    from testbed.profiles import get_profile

    if args.edge_url or args.cloud_url:
        print("edgecloud eval: --link starts its own cloud and edge; leave out --edge-url and --cloud-url",
              file=sys.stderr)
        return 2
    try:
        cpus = {side: None if text is None else parse_cpus(text, what=f"--{side}-cpus")
                for side, text in (("edge", args.edge_cpus), ("cloud", args.cloud_cpus))}
        report = eval_over_link(get_profile(args.link), bundle=args.bundle, out=args.out, eval_args=_eval_args(args),
                                tag=args.link_name, delay=args.link_delay, check=not args.no_link_check,
                                edge_cpus=cpus["edge"], cloud_cpus=cpus["cloud"])
    except (TestbedError, ValueError) as err:
        print(f"edgecloud eval: {err}", file=sys.stderr)
        return 2
    # The evaluation client has printed the table and the report's path already; add the link it ran across.
    print(link_line(report["link"]))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.link is not None:
        return run_over_link(args)
    if args.edge_url is None:
        print("edgecloud eval: give --edge-url (a running edge agent) or --link PROFILE", file=sys.stderr)
        return 2
    if args.edge_cpus is not None or args.cloud_cpus is not None:
        print("edgecloud eval: --edge-cpus / --cloud-cpus pin the services --link starts; pin services you "
              "start yourself with taskset", file=sys.stderr)
        return 2
    from edgecloud.evaluation.report import table
    from edgecloud.evaluation.run import EvalConfig, run_eval
    from shared.bundle import BundleError, load_manifest
    from shared.datasets import DatasetError, Split, load_dataset, request_inputs

    try:
        manifest = load_manifest(args.bundle)
        name = args.dataset or manifest.dataset
        # A user's image folder is read at the bundle's input size (the edge resizes a file alike).
        size = tuple(manifest.input.shape[1:]) if name == "imagefolder" else None
        dataset = load_dataset(name, data_dir=args.data_dir, seed=args.seed, image_size=size)
        test, inputs = dataset.test, request_inputs(dataset, args.payload)
        if args.limit is not None:
            test, inputs = Split(x=test.x[: args.limit], y=test.y[: args.limit]), inputs[: args.limit]
        cfg = EvalConfig(edge_url=args.edge_url, cloud_url=args.cloud_url, batch_size=args.batch_size,
                         concurrency=args.concurrency, strategies=tuple(args.strategies.split(",")),
                         repeat=args.repeat)
        report = run_eval(args.bundle, test, cfg, args.out, dataset=name, progress=not args.no_progress,
                          inputs=inputs)
    except (BundleError, DatasetError, ValueError, TimeoutError) as err:
        print(f"edgecloud eval: {err}", file=sys.stderr)
        return 2
    print(table(report))
    print(f"report: {args.out / 'report.md'}")
    return 0
