"""`edgecloud cloud serve`: the teacher behind an Open Inference Protocol endpoint (uvicorn)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

# CLI flag -> CloudSettings field; a flag left out keeps the EDGECLOUD_* variable or the default.
_OVERRIDES: tuple[str, ...] = (
    "bundle", "host", "port", "backend", "max_batch_size", "max_queue_delay_ms", "max_queue_size",
    "max_body_bytes", "token_file", "threads", "request_timeout_s", "body_timeout_s", "header_timeout_s",
    "ssl_certfile", "ssl_keyfile",
)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("cloud", help="the cloud half: the teacher behind an OIP (KServe v2) endpoint",
                            description="Cloud-side commands.")
    cloud_sub = parser.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)
    serve = cloud_sub.add_parser(
        "serve",
        help="serve the bundle's teacher over HTTP with dynamic batching",
        description=(
            "Serves model 'teacher' (input 'input' UINT8 or raw-scale FP32 [N,C,H,W]; outputs 'logits', "
            "'label') at /v2/models/teacher/infer, with /v2/health/*, /v2 and /metrics. Every flag can "
            "also be set as EDGECLOUD_<NAME> (e.g. EDGECLOUD_MAX_BATCH_SIZE); flags win. The bearer token "
            "is read from EDGECLOUD_TOKEN or --token-file, never from a flag. Example: "
            "edgecloud cloud serve --bundle artifacts/mnist --port 8001"
        ),
        # No prefix matching: `--token SECRET` would otherwise be read as `--token-file SECRET` and the
        # secret echoed back in the "does not exist" error.
        allow_abbrev=False,
    )
    serve.add_argument("--bundle", type=Path, help="bundle directory (or EDGECLOUD_BUNDLE)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8001)")
    serve.add_argument("--backend", choices=("onnx", "torch"),
                       help="onnxruntime on teacher.onnx (default) or torch on teacher.pt")
    serve.add_argument("--max-batch-size", type=int, help="most samples per forward pass (default 64)")
    serve.add_argument("--max-queue-delay-ms", type=float,
                       help="longest a request waits for a batch to fill (default 2.0)")
    serve.add_argument("--max-queue-size", type=int,
                       help="most samples queued; beyond it requests get 503 at once (default 1024)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (default 16 MiB)")
    serve.add_argument("--token-file", type=Path, help="file whose first line is the bearer token")
    serve.add_argument("--threads", type=int, help="backend intra-op threads (default: CPU count, at most 8)")
    serve.add_argument("--request-timeout-s", type=float,
                       help="longest wait for a result without X-Deadline-Ms (default 30)")
    serve.add_argument("--body-timeout-s", type=float,
                       help="longest a request body may take to arrive, else 408 (default 30)")
    serve.add_argument("--header-timeout-s", type=float,
                       help="longest a client may take to send its request headers, else 408 (default 10)")
    serve.add_argument("--ssl-certfile", type=Path, help="PEM certificate: serve HTTPS (with --ssl-keyfile)")
    serve.add_argument("--ssl-keyfile", type=Path, help="PEM private key of --ssl-certfile")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    from cloud_server.main import create_app
    from cloud_server.settings import CloudSettings
    from edgecloud.serving import serve
    from shared.bundle import BundleError, load_manifest

    overrides = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    try:
        settings = CloudSettings(**overrides)
        # Checked here too so that a broken bundle is one clear line, not a startup traceback.
        load_manifest(settings.bundle, verify=True)
        app = create_app(settings)
    except ValidationError as err:
        for problem in err.errors():
            field = ".".join(str(p) for p in problem["loc"]) or "settings"
            print(f"edgecloud cloud serve: invalid {field}: {problem['msg']}", file=sys.stderr)
        return 2
    except (BundleError, ValueError) as err:
        print(f"edgecloud cloud serve: {err}", file=sys.stderr)
        return 2
    serve(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=args.access_log,
          header_timeout_s=settings.header_timeout_s, ssl_certfile=settings.ssl_certfile,
          ssl_keyfile=settings.ssl_keyfile)
    return 0
