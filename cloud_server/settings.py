"""Cloud server settings: environment variables `EDGECLOUD_*`, overridden by CLI flags, validated at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from serving.settings import ServerSettings, bundle_dir, default_threads


class CloudSettings(ServerSettings):
    """Everything the cloud server needs; a bad value stops start-up with a message naming it."""

    bundle: Path = Field(description="bundle directory from `edgecloud build` (with teacher.onnx or teacher.pt)")
    models: list[str] | None = Field(
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
    token_file: Path | None = Field(default=None, description="file whose first line is the bearer token")
    threads: int = Field(default_factory=default_threads, ge=1, le=256,
                         description="intra-op threads per model (default: usable cores, at most 8)")

    @field_validator("bundle")
    @classmethod
    def _bundle_is_a_bundle(cls, value: Path) -> Path:
        return bundle_dir(value)

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):  # EDGECLOUD_MODELS=teacher,student or --models teacher,student
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and not value:
            raise ValueError("models is empty; leave it out to host the bundle's teacher")
        return value

    @field_validator("token_file")
    @classmethod
    def _token_file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{info.field_name} {value} does not exist")
        return value


@lru_cache
def get_settings() -> CloudSettings:
    """Settings from the environment, read once; tests and the CLI pass their own to create_app."""
    return CloudSettings()  # type: ignore[call-arg]  # bundle comes from EDGECLOUD_BUNDLE
