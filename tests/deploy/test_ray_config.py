"""deploy/ray/serve.yaml: a Serve config Ray's own schema accepts, whose application builds from our settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from cloud_server.ray_serve import DEPLOYMENT_NAME, build_app
from cloud_server.settings import CloudSettings
from tests.deploy.tools import REPO_ROOT

SERVE_YAML = REPO_ROOT / "deploy" / "ray" / "serve.yaml"


def _config() -> dict:
    return yaml.safe_load(SERVE_YAML.read_text())


def test_the_serve_config_parses_as_rays_deploy_schema() -> None:
    schema = ServeDeploySchema.model_validate(_config())
    (app,) = schema.applications
    assert app.import_path == "cloud_server.ray_serve:build_app" and app.route_prefix == "/"
    (deployment,) = app.deployments
    assert deployment.name == DEPLOYMENT_NAME  # else Ray would not apply these options to our deployment
    autoscaling = deployment.autoscaling_config
    assert autoscaling["min_replicas"] <= autoscaling["initial_replicas"] <= autoscaling["max_replicas"]
    # One Ray CPU per onnxruntime thread, so Ray places replicas where cores are free.
    assert deployment.ray_actor_options.num_cpus == app.args["threads"]
    assert schema.http_options.port == CloudSettings.model_fields["port"].default


def test_the_applications_args_are_cloud_settings_and_build(tiny_bundle: Path) -> None:
    (app,) = _config()["applications"]
    built = build_app({**app["args"], "bundle": str(tiny_bundle)})  # the bundle's path on a real cluster's nodes
    assert isinstance(built, Application)
    with pytest.raises(ValueError, match=r"unknown args \['max_batch_sise'\]"):
        build_app({**app["args"], "bundle": str(tiny_bundle), "max_batch_sise": 8})
    with pytest.raises(ValidationError, match="max_batch_size"):
        build_app({**app["args"], "bundle": str(tiny_bundle), "max_batch_size": 0})
