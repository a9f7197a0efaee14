"""Cloud server settings: environment variables `EDGECLOUD_*`, overridden by CLI flags, validated at start."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from serving.settings import BundleDir, ExistingFile, ServerSettings, default_threads


def model_names(value: object) -> object:
    """A `models` setting as a list: EDGECLOUD_MODELS=teacher,student or --models teacher,student."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and not value:
        raise ValueError("models is empty; leave it out for the bundle's teacher")
    return value


ModelNames = Annotated[list[str] | None, BeforeValidator(model_names)]
"""A `models` setting: names of a bundle's models, a list or one comma-separated string."""


class CloudSettings(ServerSettings):
    """Everything the cloud server needs; a bad value stops start-up with a message naming it."""

    bundle: BundleDir = Field(description="bundle directory from `edgecloud build` (with teacher.onnx or teacher.pt)")
    models: ModelNames = Field(
        default=None,
        description="names of the bundle's models to host, comma-separated (default: its teacher); each is "
                    "served at /v2/models/NAME with its own batcher")
    port: int = Field(default=8001, ge=0, le=65535, description="TCP port to listen on")
    backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="onnxruntime on the ONNX graphs, or torch on the checkpoints (needs torch installed); "
                    "onnx measured faster on CPU (bench/cloud_backend.py)")
    max_batch_size: int = Field(default=64, ge=1, description="most samples merged into one forward pass")
    max_queue_delay_ms: float = Field(
        default=2.0, ge=0.0, le=10_000.0,
        description="longest the oldest queued request waits for others to fill a batch")
    max_queue_size: int = Field(
        default=1024, ge=1,
        description="most samples (not requests) waiting per model; beyond it requests get 503 at once")
    token: SecretStr | None = Field(default=None, description="bearer token required for inference, if set")
    token_file: ExistingFile | None = Field(default=None, description="file whose first line is the bearer token")
    threads: int = Field(default_factory=default_threads, ge=1, le=256,
                         description="intra-op threads per model (default: usable cores, at most 8)")


@lru_cache
def get_settings() -> CloudSettings:
    """Settings from the environment, read once; tests and the CLI pass their own to create_app."""
    return CloudSettings()  # type: ignore[call-arg]  # bundle comes from EDGECLOUD_BUNDLE


class RayServeSettings(CloudSettings):
    """The cloud on a Ray cluster (`edgecloud cloud ray-serve`): every CloudSettings field applies to each replica;
    `host` and `port` are those of Ray Serve's HTTP proxy. A bad value stops start-up with a message naming it."""

    address: str | None = Field(
        default=None,
        description="Ray cluster to deploy on: HOST:PORT of its head (GCS), 'auto', or ray://HOST:10001; unset "
                    "starts a local one for the life of the command")
    app_name: str = Field(default="edgecloud", min_length=1, pattern=r"^[A-Za-z0-9_-]+$",
                          description="Ray Serve application name (`serve status` lists it)")
    route_prefix: str = Field(
        default="/", pattern=r"^/[A-Za-z0-9_/-]*$",
        description="path the application is served under: '/' keeps the OIP paths as `cloud serve` has them "
                    "(/v2/models/teacher/infer); '/a' serves them under /a/v2/... (two applications on one cluster)")
    proxy_location: Literal["HeadOnly", "EveryNode"] = Field(
        default="HeadOnly",
        description="where Ray Serve runs its HTTP proxy (on host:port): the head node only, or every node (put a "
                    "load balancer in front); applies when Serve is not yet running on the cluster")
    replicas: int = Field(default=1, ge=1, le=1000,
                          description="replicas (each a full cloud server with its own batcher per model); with "
                                      "max_replicas, the fewest")
    max_replicas: int | None = Field(
        default=None, ge=1, le=1000,
        description="autoscale between replicas and this many on queue length (target_queue); unset: fixed replicas")
    target_queue: float = Field(
        default=16.0, gt=0.0, le=100_000.0,
        description="requests per replica (computing or queued in its batcher or at the proxy) above which Ray "
                    "Serve adds replicas, below which it removes them (its target_ongoing_requests)")
    replica_cpus: float | None = Field(
        default=None, gt=0.0, le=1024.0,
        description="Ray CPUs each replica reserves (default: threads), so Ray places replicas where cores are free")
    max_ongoing_requests: int = Field(
        default=256, ge=1, le=100_000,
        description="requests a replica takes at once; our batcher merges them (above it they wait at the proxy)")
    max_queued_requests: int = Field(
        default=1024, ge=1, le=1_000_000,
        description="requests that may wait at the proxy for a replica; beyond it Ray answers 503 at once, as our "
                    "own full queue does, and the edge retries or falls back")

    @model_validator(mode="after")
    def _replica_range(self) -> RayServeSettings:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below replicas {self.replicas}")
        return self

    @property
    def cpus_per_replica(self) -> float:
        return self.replica_cpus if self.replica_cpus is not None else float(self.threads)
