"""KServe InferenceService manifests for the cloud tier: Triton over an exported repository, or our own image.

    edgecloud export triton --bundle artifacts/mnist --out triton-repo     # then upload triton-repo
    edgecloud export kserve --bundle artifacts/mnist --out kserve/ \\
        --repository-uri s3://models/triton-repo --bundle-uri s3://models/mnist --image registry/edgecloud:0.1.0
    kubectl apply -f kserve/inferenceservice-triton.yaml

Two InferenceServices (serving.kserve.io/v1beta1), each answering the v2 protocol at
/v2/models/NAME/infer, so the edge's --cloud-url can point at either:

- `NAME-triton`: KServe's Triton runtime (model format `triton`) over the repository that
  `edgecloud export triton` wrote (the stock onnxruntime backend; the normalisation is in the graph);
- `NAME`: our image as a custom predictor, `edgecloud cloud serve` on the bundle that KServe's storage
  initializer downloads to /mnt/models (STORAGE_URI), with our batcher, auth and metrics.

Both scale on concurrency (Knative's in-flight requests per replica, KServe's `scaleMetric`), the
queue-length signal closest to ours. The manifests are plain dicts written as YAML; the tests check
them against the KServe Python SDK's models (tests/cloud_server/test_kserve_export.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud_server.settings import ModelNames
from serving.settings import BundleDir
from shared.bundle import BundleError, load_manifest

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
CONTAINER_PORT = 8080
"""The port KServe routes to in a custom predictor's `kserve-container`."""
MODEL_DIR = "/mnt/models"
"""Where KServe's storage initializer puts what STORAGE_URI names."""
TRITON_FILE = "inferenceservice-triton.yaml"
EDGECLOUD_FILE = "inferenceservice-edgecloud.yaml"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class KServeExportSettings(BaseSettings):
    """What `edgecloud export kserve` writes."""

    model_config = SettingsConfigDict(env_prefix="EDGECLOUD_", extra="ignore")

    bundle: BundleDir = Field(description="bundle directory from `edgecloud build` (its models and input are checked)")
    out: Path = Field(description="directory to write the manifests to (created)")
    name: str = Field(default="edgecloud", min_length=1, max_length=40,
                      description="InferenceService name; the Triton one is NAME-triton")
    namespace: str | None = Field(default=None, description="Kubernetes namespace (default: kubectl's)")
    models: ModelNames = Field(
        default=None, description="models the services host, comma-separated (default: the bundle's teacher)")
    repository_uri: str | None = Field(
        default=None, description="storage URI of the `edgecloud export triton` repository (s3://, gs://, pvc://); "
                                  "unset: no Triton manifest")
    bundle_uri: str | None = Field(
        default=None, description="storage URI of the bundle for our image; unset: no edgecloud manifest")
    image: str = Field(default="edgecloud:0.1.0", min_length=1, description="our cloud image (Dockerfile)")
    token_secret: str | None = Field(
        default=None, description="Kubernetes Secret whose key `token` is the bearer token our image requires")
    threads: int = Field(default=1, ge=1, le=256, description="onnxruntime intra-op threads per replica")
    cpu: str = Field(default="1", min_length=1, description="CPU request and limit per replica")
    memory: str = Field(default="2Gi", min_length=1, description="memory request and limit per replica")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="fewest replicas (0: scale to zero when idle)")
    max_replicas: int = Field(default=4, ge=1, le=1000, description="most replicas")
    scale_target: int = Field(default=32, ge=1, le=100_000,
                              description="in-flight requests per replica at which KServe adds replicas")

    @field_validator("name", "token_secret", "namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes name: lowercase letters, digits and '-', starting "
                             "with a letter")
        return value

    @model_validator(mode="after")
    def _something_to_write(self) -> KServeExportSettings:
        if self.repository_uri is None and self.bundle_uri is None:
            raise ValueError("set repository_uri (Triton), bundle_uri (our image), or both")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} exceeds max_replicas {self.max_replicas}")
        return self


def _metadata(name: str, settings: KServeExportSettings, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "edgecloud",
                                                     "app.kubernetes.io/component": component}}
    if settings.namespace is not None:
        meta["namespace"] = settings.namespace
    return meta


def _scaling(settings: KServeExportSettings) -> dict[str, Any]:
    return {"minReplicas": settings.min_replicas, "maxReplicas": settings.max_replicas,
            "scaleMetric": "concurrency", "scaleTarget": settings.scale_target}


def _resources(settings: KServeExportSettings) -> dict[str, Any]:
    amount = {"cpu": settings.cpu, "memory": settings.memory}
    return {"requests": dict(amount), "limits": dict(amount)}


def triton_service(settings: KServeExportSettings, models: list[str]) -> dict[str, Any]:
    """KServe's Triton runtime over the exported repository (every model in it is served by its name)."""
    assert settings.repository_uri is not None
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": _metadata(f"{settings.name}-triton", settings, "cloud-triton")
        | {"annotations": {"edgecloud/models": ",".join(models)}},
        "spec": {"predictor": {
            **_scaling(settings),
            "model": {"modelFormat": {"name": "triton"}, "protocolVersion": "v2",
                      "storageUri": settings.repository_uri, "resources": _resources(settings)},
        }},
    }


def edgecloud_service(settings: KServeExportSettings, models: list[str]) -> dict[str, Any]:
    """Our image as a custom predictor: `edgecloud cloud serve` on the bundle at /mnt/models."""
    assert settings.bundle_uri is not None
    env: list[dict[str, Any]] = [{"name": "STORAGE_URI", "value": settings.bundle_uri}]
    if settings.token_secret is not None:
        env.append({"name": "EDGECLOUD_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": settings.token_secret, "key": "token"}}})
    probe = {"httpGet": {"path": "/v2/health/ready", "port": CONTAINER_PORT}, "periodSeconds": 5}
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": _metadata(settings.name, settings, "cloud"),
        "spec": {"predictor": {
            **_scaling(settings),
            "containers": [{
                "name": "kserve-container", "image": settings.image,
                "command": ["edgecloud", "cloud", "serve"],
                "args": ["--bundle", MODEL_DIR, "--host", "0.0.0.0", "--port", str(CONTAINER_PORT),
                         "--models", ",".join(models), "--threads", str(settings.threads)],
                "env": env,
                "ports": [{"containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                "readinessProbe": probe,
                "resources": _resources(settings),
            }],
        }},
    }


def manifests(settings: KServeExportSettings) -> dict[str, dict[str, Any]]:
    """File name -> InferenceService, for the URIs given; BundleError names a model the bundle lacks."""
    manifest = load_manifest(settings.bundle, verify=True)
    models = settings.models if settings.models is not None else [manifest.teacher]
    missing = [name for name in models if name not in manifest.models]
    if missing:
        raise BundleError(f"model {missing[0]!r} is not in bundle {settings.bundle}; it has {sorted(manifest.models)}")
    written: dict[str, dict[str, Any]] = {}
    if settings.repository_uri is not None:
        written[TRITON_FILE] = triton_service(settings, models)
    if settings.bundle_uri is not None:
        written[EDGECLOUD_FILE] = edgecloud_service(settings, models)
    return written


def write_manifests(settings: KServeExportSettings) -> list[Path]:
    import yaml

    settings.out.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, service in manifests(settings).items():
        path = settings.out / filename
        path.write_text(yaml.safe_dump(service, sort_keys=False))
        paths.append(path)
    return paths
