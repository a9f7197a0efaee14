"""The cloud tier on Ray Serve: every replica runs the server `edgecloud cloud serve` runs.

    edgecloud cloud ray-serve --bundle artifacts/mnist --replicas 2                  # a local Ray cluster
    edgecloud cloud ray-serve --bundle B --address HEAD:6379 --replicas 2 --max-replicas 8
    serve deploy deploy/ray/serve.yaml                                                # Ray's own CLI and config

Each replica builds `cloud_server.main.create_app(settings)` in its own process and mounts it as its
ASGI ingress (`serve.ingress` with `__serve_build_asgi_app__`; Ray runs the app's lifespan, which loads
and warms the models). So the routes (OIP infer with the binary extension, health, metadata, the
repository extension, /metrics), the codec, the bearer-token check, the limits and the error answers
are the runtime's own, not a copy. Ray Serve adds what one machine lacks: its HTTP proxy in front,
routing to the replica with fewer requests in flight, replicas restarted when they die, spread over
the cluster's nodes, and autoscaling.

Batching is ours, per replica: each hosted model batches through the runtime's one batcher
(serving/batcher.py), as in `cloud serve`. Ray Serve's `@serve.batch` would be a second batching code
path beside it, with an unbounded queue and no deadlines, and the replica's requests already reach
one event loop where ours merges them. Ray bounds what reaches a replica instead: at most
`max_ongoing_requests` at once (they queue in our batcher, bounded in samples, 503 beyond); the rest
wait at the proxy, at most `max_queued_requests`, beyond which Ray answers 503 at once as well.

Autoscaling is Ray Serve's, on queue length: it compares the requests per replica that are queued or
computing (at the replica, in our batcher, and waiting at the proxy) with `target_queue` (its
`target_ongoing_requests`) and adds or removes replicas between `replicas` and `max_replicas`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings, RayServeSettings

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "cloud"
"""The deployment's name in `serve status` and in a Serve config file's `deployments` section."""


@serve.ingress()
class CloudReplica:
    """One replica: the cloud server, built from CloudSettings fields in the replica's process."""

    def __init__(self, fields: dict[str, Any]) -> None:
        # Validated here, on the replica's node: the bundle path must exist there, and EDGECLOUD_TOKEN /
        # EDGECLOUD_TOKEN_FILE of the replica's environment apply (secrets never travel in `fields`).
        self.settings = CloudSettings(**fields)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.settings)


CloudDeployment = serve.deployment(name=DEPLOYMENT_NAME)(CloudReplica)


def replica_fields(settings: CloudSettings) -> dict[str, Any]:
    """The CloudSettings each replica is built from, as JSON values; the token is left out (see `runtime_env`)."""
    return settings.model_dump(mode="json", include=set(CloudSettings.model_fields) - {"token"})


def runtime_env(settings: CloudSettings) -> dict[str, Any]:
    """A token given to the command as EDGECLOUD_TOKEN reaches the replicas as the same variable in their
    runtime environment (visible to whoever can read the cluster's job and actor metadata: prefer
    token_file, a path every node can read)."""
    if settings.token is None:
        return {}
    return {"env_vars": {"EDGECLOUD_TOKEN": settings.token.get_secret_value()}}


def deployment_options(settings: RayServeSettings) -> dict[str, Any]:
    """Ray Serve options of the deployment: replicas or autoscaling, resources, queue bounds."""
    actor: dict[str, Any] = {"num_cpus": settings.cpus_per_replica}
    if env := runtime_env(settings):
        actor["runtime_env"] = env
    options: dict[str, Any] = {"ray_actor_options": actor, "max_ongoing_requests": settings.max_ongoing_requests,
                               "max_queued_requests": settings.max_queued_requests}
    if settings.max_replicas is None:
        options["num_replicas"] = settings.replicas
    else:
        options["autoscaling_config"] = {"min_replicas": settings.replicas, "initial_replicas": settings.replicas,
                                         "max_replicas": settings.max_replicas,
                                         "target_ongoing_requests": settings.target_queue}
    return options


def cloud_application(settings: RayServeSettings) -> Application:
    """The Serve application `edgecloud cloud ray-serve` deploys."""
    return CloudDeployment.options(**deployment_options(settings)).bind(replica_fields(settings))


def build_app(args: dict[str, Any]) -> Application:
    """`import_path` of a Serve config file (deploy/ray/serve.yaml): `args` are CloudSettings fields.

    Replicas, autoscaling and resources come from the config's `deployments` section, Ray's own
    mechanism; the defaults here are one replica with `threads` CPUs.
    """
    # CloudSettings ignores unknown keys (it also reads the environment); a config file's typo must not be ignored.
    unknown = sorted(set(args) - set(CloudSettings.model_fields))
    if unknown:
        raise ValueError(f"unknown args {unknown} in the Serve config; CloudSettings fields are "
                         f"{sorted(CloudSettings.model_fields)}")
    settings = CloudSettings(**args)  # a bad field fails the deploy, and `serve status` shows this message
    return CloudDeployment.options(ray_actor_options={"num_cpus": float(settings.threads)}).bind(
        replica_fields(settings))


def run(settings: RayServeSettings, *, stop: threading.Event, on_ready: Callable[[str], None]) -> None:
    """Deploy on the cluster at settings.address (else a local one), call `on_ready(url)`, serve until `stop`.

    On the way out the application is deleted; a local cluster is shut down with it, an existing
    cluster (and Serve on it) keeps running.
    """
    import ray

    local = settings.address is None
    ray.init(address=settings.address, include_dashboard=False if local else None, logging_level=logging.WARNING)
    try:
        serve.start(proxy_location=settings.proxy_location,
                    http_options={"host": settings.host, "port": settings.port})
        serve.run(cloud_application(settings), name=settings.app_name, route_prefix=settings.route_prefix)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        on_ready(f"http://{host}:{settings.port}{settings.route_prefix.rstrip('/')}")
        stop.wait()
    finally:
        try:
            serve.delete(settings.app_name)
            if local:
                serve.shutdown()
        finally:
            ray.shutdown()
