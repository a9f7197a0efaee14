"""The cloud server: the runtime (serving/) hosting the bundle's teacher (and any models it is given).

    uvicorn --factory cloud_server.main:create_app     # settings from EDGECLOUD_* variables
    edgecloud cloud serve --bundle artifacts/mnist     # the same, with CLI flags on top
"""

from __future__ import annotations

from fastapi import FastAPI

from cloud_server.hosting import BackendLoader, cloud_hosting, default_backend_loader
from cloud_server.settings import CloudSettings, get_settings
from serving.app import create_server
from serving.metrics import ServerMetrics
from shared.settings import read_token

SERVER_NAME = "edgecloud-cloud"


def create_app(settings: CloudSettings | None = None, *,
               backend_loader: BackendLoader = default_backend_loader) -> FastAPI:
    """A new app with its own registry and metrics; the models are loaded when the lifespan starts."""
    settings = settings if settings is not None else get_settings()
    token = read_token(settings.token, settings.token_file)  # a bad token setting fails here, at start
    metrics = ServerMetrics()
    return create_server(settings, hosting=cloud_hosting(settings, metrics, backend_loader=backend_loader),
                         metrics=metrics, server_name=SERVER_NAME, token=token, title="edgecloud cloud",
                         summary="The teacher (and any other hosted models) behind an Open Inference Protocol "
                                 "endpoint")
