"""`edgecloud cloud serve`: the bundle's teacher (and any models named) behind an OIP endpoint (uvicorn)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from cloud_server.settings import CloudSettings
from serving.cli import add_settings_arguments, describe_invalid, overrides

PROG = "edgecloud cloud serve"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("cloud", help="the cloud tier: the teacher behind an OIP (KServe v2) endpoint",
                            description="Cloud-side commands.")
    cloud_sub = parser.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)
    serve = cloud_sub.add_parser(
        "serve",
        help="serve the bundle's teacher (and other models) over HTTP with dynamic batching",
        description=(
            "Serves the bundle's teacher (input 'input' UINT8 or raw-scale FP32 [N,C,H,W]; outputs 'logits', "
            "'label') at /v2/models/teacher/infer, with /v2/health/*, /v2, /v2/models/NAME[/ready], the "
            "repository extension (/v2/repository/...) and /metrics. --models hosts other models of the "
            "bundle beside it (e.g. --models teacher,student), each with its own batcher. Every flag can "
            "also be set as EDGECLOUD_<NAME>; flags win. The bearer token is read from EDGECLOUD_TOKEN or "
            "--token-file, never from a flag. Example: edgecloud cloud serve --bundle artifacts/mnist --port 8001"
        ),
        # No prefix matching: `--token SECRET` would otherwise be read as `--token-file SECRET` and the
        # secret echoed back in the "does not exist" error.
        allow_abbrev=False,
    )
    fields = add_settings_arguments(serve, CloudSettings, CloudSettings.model_fields)
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    serve.set_defaults(handler=run_serve, settings_fields=fields)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    from cloud_server.hosting import hosted_models
    from cloud_server.main import create_app
    from serving.errors import ModelNotFoundError
    from serving.server import serve
    from shared.bundle import BundleError, load_manifest

    try:
        settings = CloudSettings(**overrides(args, args.settings_fields))
        # Checked here too so that a broken bundle is one clear line, not a startup traceback.
        hosted_models(settings, load_manifest(settings.bundle, verify=True))
        app = create_app(settings)
    except ValidationError as err:
        for line in describe_invalid(err):
            print(f"{PROG}: {line}", file=sys.stderr)
        return 2
    except (BundleError, ValueError, ModelNotFoundError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    serve(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=args.access_log,
          header_timeout_s=settings.header_timeout_s, ssl_certfile=settings.ssl_certfile,
          ssl_keyfile=settings.ssl_keyfile)
    return 0
