"""`edgecloud edge serve` / `edgecloud edge run`: the edge half (student + offloader + cloud client).

Nothing here imports torch, directly or through a handler: the edge runs on boards without it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from edge_agent.settings import EdgeSettings
from serving.cli import add_settings_arguments, describe_invalid, overrides
from serving.settings import ServerSettings
from shared.names import Strategy

# Flags come from EdgeSettings (serving/cli.py). What `serve` and `run` each leave out:
_SERVER_ONLY: tuple[str, ...] = (*ServerSettings.model_fields, "port", "max_queue_size")
_RUN_ONLY: tuple[str, ...] = ("batch_size",)


def _fields(leave_out: tuple[str, ...]) -> list[str]:
    return [name for name in EdgeSettings.model_fields if name not in leave_out]


def _add_common(parser: argparse.ArgumentParser, fields: list[str]) -> list[str]:
    added = add_settings_arguments(parser, EdgeSettings, fields)
    parser.add_argument("--cloud-json", action="store_true",
                        help="send JSON tensors, for cloud servers without the binary extension (MLServer); "
                             "the same as --no-cloud-binary")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return added


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("edge", help="the edge half: student + offloader, offloading complex samples",
                            description="Edge-side commands. Every flag can also be set as EDGECLOUD_<NAME> "
                                        "(e.g. EDGECLOUD_CLOUD_URL); flags win. The bearer token is read from "
                                        "EDGECLOUD_TOKEN or --token-file, never from a flag.")
    edge_sub = parser.add_subparsers(dest="edge_command", metavar="ACTION", required=True)
    serve = edge_sub.add_parser(
        "serve", help="serve model 'edge' over the Open Inference Protocol",
        description="Serves model 'edge' (input 'input' UINT8 or raw-scale FP32 [N,C,H,W]; outputs 'label', "
                    "'source', 'fallback_reason') at /v2/models/edge/infer, with /v2/health/*, /v2 and /metrics. "
                    "Example: edgecloud edge serve --bundle artifacts/mnist --cloud-url http://127.0.0.1:8001",
        # No prefix matching: `--token SECRET` would otherwise be read as `--token-file SECRET` and the
        # secret echoed back in the "does not exist" error.
        allow_abbrev=False)
    serve_fields = _add_common(serve, _fields(_RUN_ONLY))
    serve.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    serve.set_defaults(handler=run_serve, settings_fields=serve_fields)

    run = edge_sub.add_parser(
        "run", help="stream a dataset's test split through the agent and write one line per sample",
        description="Streams the test split in batches through the same agent `serve` uses and writes one "
                    "line per sample to --out: JSON lines {index, label, target, source, fallback_reason}, or "
                    "TSV with a header when --out ends in .tsv. Prints a summary at the end. Example: "
                    "edgecloud edge run --bundle artifacts/mnist --cloud-url http://127.0.0.1:8001 "
                    "--dataset mnist --data-dir ../shared/data/mnist --out answers.jsonl", allow_abbrev=False)
    run_fields = _add_common(run, _fields(_SERVER_ONLY))
    run.add_argument("--dataset", required=True, help="dataset name (see shared.datasets.DATASETS)")
    run.add_argument("--data-dir", type=Path, help="directory holding the dataset's files")
    run.add_argument("--out", type=Path, required=True, help="answers file (.jsonl, or .tsv)")
    run.add_argument("--limit", type=int, help="only the first N test samples")
    run.add_argument("--seed", type=int, default=0, help="seed of the dataset's splits (default 0)")
    run.add_argument("--strategy", default=Strategy.COOPERATION.value, choices=[s.value for s in Strategy],
                     help="follow the offloader (default), never offload, or always offload")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(handler=run_run, settings_fields=run_fields)


def _settings(args: argparse.Namespace, command: str) -> EdgeSettings | None:
    """EdgeSettings from env + flags, or None after printing each invalid field on one line."""
    from pydantic import ValidationError

    from shared.settings import TokenError

    given = overrides(args, args.settings_fields)
    if args.cloud_json:
        given["cloud_binary"] = False
    try:
        settings = EdgeSettings(**given)
        settings.bearer_token()
    except ValidationError as err:
        for line in describe_invalid(err):
            print(f"edgecloud edge {command}: {line}", file=sys.stderr)
        return None
    except TokenError as err:
        print(f"edgecloud edge {command}: {err}", file=sys.stderr)
        return None
    return settings


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per offload would drown the progress bar and the summary.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def run_serve(args: argparse.Namespace) -> int:
    _logging(args.log_level)
    settings = _settings(args, "serve")
    if settings is None:
        return 2
    from edge_agent.app import create_app
    from serving.server import serve
    from shared.bundle import BundleError, load_manifest

    try:
        load_manifest(settings.bundle, verify=True)  # a broken bundle is one clear line, not a traceback
    except BundleError as err:
        print(f"edgecloud edge serve: {err}", file=sys.stderr)
        return 2
    serve(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
          access_log=args.access_log, header_timeout_s=settings.header_timeout_s,
          ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)
    return 0


def run_run(args: argparse.Namespace) -> int:
    _logging(args.log_level)
    settings = _settings(args, "run")
    if settings is None:
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"edgecloud edge run: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    import asyncio

    from tqdm import tqdm

    from edge_agent.agent import open_agent
    from edge_agent.runner import run_to_file
    from shared.bundle import BundleError
    from shared.datasets import DatasetError, load_dataset

    try:
        test = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.seed).test
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"edgecloud edge run: {err}", file=sys.stderr)
        return 2
    x, y = (test.x, test.y) if args.limit is None else (test.x[: args.limit], test.y[: args.limit])

    async def go() -> Any:
        async with open_agent(settings) as agent:
            with tqdm(total=len(y), unit="sample", desc="edge run", disable=args.no_progress) as bar:
                return await run_to_file(agent, x, y, args.out, batch_size=settings.batch_size,
                                         strategy=args.strategy, on_batch=bar.update)

    try:
        summary = asyncio.run(go())
    except (BundleError, ValueError) as err:
        print(f"edgecloud edge run: {err}", file=sys.stderr)
        return 2
    print(summary.format())
    print(f"answers   {args.out}")
    return 0
