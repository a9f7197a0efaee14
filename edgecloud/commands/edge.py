"""`edgecloud edge serve` / `edgecloud edge run`: the edge half (student + offloader + cloud client).

Nothing here imports torch, directly or through a handler: the edge runs on boards without it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

# CLI flag -> EdgeSettings field; a flag left out keeps the EDGECLOUD_* variable or the default.
_COMMON: tuple[str, ...] = (
    "bundle", "cloud_url", "cloud_model", "token_file", "ca_bundle", "connect_timeout_s", "read_timeout_s",
    "deadline_ms", "retries", "backoff_s", "breaker_failures", "breaker_reset_s", "threshold", "threads",
    "max_inflight", "ratio_window",
)
_SERVE_ONLY: tuple[str, ...] = ("host", "port", "max_body_bytes", "body_timeout_s", "header_timeout_s")
_RUN_ONLY: tuple[str, ...] = ("batch_size",)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, help="bundle directory (or EDGECLOUD_BUNDLE)")
    parser.add_argument("--cloud-url", help="base URL of the cloud OIP server; leave out for edge-only")
    parser.add_argument("--cloud-model", help="model name on the cloud server (default teacher)")
    parser.add_argument("--cloud-json", action="store_true",
                        help="send JSON tensors, for cloud servers without the binary extension (MLServer)")
    parser.add_argument("--token-file", type=Path, help="file whose first line is the cloud's bearer token")
    parser.add_argument("--ca-bundle", type=Path, help="PEM CA file trusted for an https:// cloud")
    parser.add_argument("--connect-timeout-s", type=float, help="cloud connect timeout (default 1.0)")
    parser.add_argument("--read-timeout-s", type=float, help="cloud read timeout (default 2.0)")
    parser.add_argument("--deadline-ms", type=float, help="budget of one offload, retries included (default 3000)")
    parser.add_argument("--retries", type=int, help="retries after a connect error or 503 (default 2)")
    parser.add_argument("--backoff-s", type=float, help="first retry delay, doubled per retry (default 0.05)")
    parser.add_argument("--breaker-failures", type=int, help="failures that open the circuit (default 5)")
    parser.add_argument("--breaker-reset-s", type=float, help="open-circuit time before a probe (default 5)")
    parser.add_argument("--threshold", type=float, help="override the bundle's operating-point threshold")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--max-inflight", type=int, help="most offloads in flight at once (default 8)")
    parser.add_argument("--ratio-window", type=int, help="samples in the offload-ratio gauge's window (1000)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


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
    _add_common(serve)
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (default 16 MiB)")
    serve.add_argument("--body-timeout-s", type=float,
                       help="longest a request body may take to arrive, else 408 (default 30)")
    serve.add_argument("--header-timeout-s", type=float,
                       help="longest a client may take to send its request headers, else 408 (default 10)")
    serve.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    serve.set_defaults(handler=run_serve)

    run = edge_sub.add_parser(
        "run", help="stream a dataset's test split through the agent and write one line per sample",
        description="Streams the test split in batches through the same agent `serve` uses and writes one "
                    "line per sample to --out: JSON lines {index, label, target, source, fallback_reason}, or "
                    "TSV with a header when --out ends in .tsv. Prints a summary at the end. Example: "
                    "edgecloud edge run --bundle artifacts/mnist --cloud-url http://127.0.0.1:8001 "
                    "--dataset mnist --data-dir ../shared/data/mnist --out answers.jsonl", allow_abbrev=False)
    _add_common(run)
    run.add_argument("--dataset", required=True, help="dataset name (see shared.datasets.DATASETS)")
    run.add_argument("--data-dir", type=Path, help="directory holding the dataset's files")
    run.add_argument("--out", type=Path, required=True, help="answers file (.jsonl, or .tsv)")
    run.add_argument("--batch-size", type=int, help="samples per student forward pass (default 64)")
    run.add_argument("--limit", type=int, help="only the first N test samples")
    run.add_argument("--seed", type=int, default=0, help="seed of the dataset's splits (default 0)")
    run.add_argument("--strategy", default="cooperation", choices=("cooperation", "edge_only", "cloud_only"),
                     help="follow the offloader (default), never offload, or always offload")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(handler=run_run)


def _settings(args: argparse.Namespace, fields: tuple[str, ...], command: str) -> Any | None:
    """EdgeSettings from env + flags, or None after printing each invalid field on one line."""
    from pydantic import ValidationError

    from edge_agent.settings import EdgeSettings
    from shared.settings import TokenError

    overrides = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
    if args.cloud_json:
        overrides["cloud_binary"] = False
    try:
        settings = EdgeSettings(**overrides)
        settings.bearer_token()
    except ValidationError as err:
        for problem in err.errors():
            field = ".".join(str(p) for p in problem["loc"]) or "settings"
            print(f"edgecloud edge {command}: invalid {field}: {problem['msg']}", file=sys.stderr)
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
    settings = _settings(args, _COMMON + _SERVE_ONLY, "serve")
    if settings is None:
        return 2
    from edge_agent.app import create_app
    from edgecloud.serving import serve
    from shared.bundle import BundleError, load_manifest

    try:
        load_manifest(settings.bundle, verify=True)  # a broken bundle is one clear line, not a traceback
    except BundleError as err:
        print(f"edgecloud edge serve: {err}", file=sys.stderr)
        return 2
    serve(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
          access_log=args.access_log, header_timeout_s=settings.header_timeout_s)
    return 0


def run_run(args: argparse.Namespace) -> int:
    _logging(args.log_level)
    settings = _settings(args, _COMMON + _RUN_ONLY, "run")
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
