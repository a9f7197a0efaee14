"""`edgecloud cloud serve`: the bundle's teacher (and any models named) behind an OIP endpoint (uvicorn)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from cloud_server.settings import CloudSettings, RayServeSettings
from serving.cli import add_settings_arguments, describe_invalid, overrides

PROG = "edgecloud cloud serve"
RAY_PROG = "edgecloud cloud ray-serve"
# Applied by `edgecloud cloud serve`'s own HTTP server; on Ray Serve the proxy in front is Ray's, so these get no flag.
_NOT_ON_RAY: tuple[str, ...] = ("header_timeout_s", "ssl_certfile", "ssl_keyfile")


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

    ray_serve = cloud_sub.add_parser(
        "ray-serve",
        help="serve the same models on a Ray cluster with Ray Serve: replicas, autoscaling on queue length",
        description=(
            "Deploys the cloud on Ray Serve: each replica runs the server `edgecloud cloud serve` runs (same OIP "
            "routes, binary codec, bearer token, limits, errors and dynamic batcher), behind Ray Serve's HTTP "
            "proxy on --host/--port. --address joins an existing Ray cluster (HEAD:6379, 'auto' or "
            "ray://HEAD:10001); without it a local cluster is started for the life of the command. --replicas "
            "fixes the replica count; with --max-replicas Ray Serve autoscales between the two on requests per "
            "replica (--target-queue). The bundle must be at the same path on every node. Serves until Ctrl-C or "
            "SIGTERM, then deletes the application. For a cluster managed with Ray's own tools, see "
            "deploy/ray/serve.yaml. Example: edgecloud cloud ray-serve --bundle artifacts/mnist --address "
            "127.0.0.1:6379 --replicas 2 --threads 1 --port 8001"),
        allow_abbrev=False)
    ray_fields = add_settings_arguments(ray_serve, RayServeSettings,
                                        [f for f in RayServeSettings.model_fields if f not in _NOT_ON_RAY])
    ray_serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    ray_serve.set_defaults(handler=run_ray_serve, settings_fields=ray_fields)


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


def run_ray_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import signal
    import threading

    from pydantic import ValidationError

    from cloud_server.hosting import hosted_models
    from serving.errors import ModelNotFoundError
    from shared.bundle import BundleError, load_manifest
    from shared.settings import TokenError, read_token

    try:
        settings = RayServeSettings(**overrides(args, args.settings_fields))
        read_token(settings.token, settings.token_file)
        hosted_models(settings, load_manifest(settings.bundle, verify=True))
    except ValidationError as err:
        for line in describe_invalid(err):
            print(f"{RAY_PROG}: {line}", file=sys.stderr)
        return 2
    except (BundleError, ValueError, ModelNotFoundError, TokenError) as err:
        print(f"{RAY_PROG}: {err}", file=sys.stderr)
        return 2
    try:
        from cloud_server import ray_serve
    except ImportError as err:
        print(f"{RAY_PROG}: Ray Serve is not installed ({err}): pip install 'edgecloud[ray]'", file=sys.stderr)
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = logging.getLogger(RAY_PROG)

    def ready(url: str) -> None:
        replicas = (f"{settings.replicas}..{settings.max_replicas} (autoscaling, target {settings.target_queue:g} "
                    "requests per replica)" if settings.max_replicas else str(settings.replicas))
        log.info("ready: application %r on %s, replicas %s, %d threads each; Ctrl-C stops it", settings.app_name,
                 url, replicas, settings.threads)

    try:
        ray_serve.run(settings, stop=stop, on_ready=ready)
    except KeyboardInterrupt:
        pass
    except RuntimeError as err:  # Ray's deploy failures (a replica that cannot start) name the cause
        print(f"{RAY_PROG}: {err}", file=sys.stderr)
        return 1
    return 0
