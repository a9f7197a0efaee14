"""Cloud server settings: environment variables `EDGECLOUD_*`, overridden by CLI flags, validated at start."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


def default_threads() -> int:
    """The cores this process may run on, up to 8: past that, a small-batch forward pass gains little.

    The affinity mask, not os.cpu_count(): under `taskset` or a container's cpuset, more threads than
    cores only time-slice against each other.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return max(1, min(8, usable))


class CloudSettings(BaseSettings):
    """Everything the cloud server needs; a bad value stops start-up with a message naming it."""

    model_config = SettingsConfigDict(env_prefix="EDGECLOUD_", extra="ignore")

    bundle: Path = Field(description="bundle directory from `edgecloud build` (with teacher.onnx or .pt)")
    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8001, ge=0, le=65535, description="TCP port to listen on")
    backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="onnxruntime on teacher.onnx, or torch on teacher.pt; onnx measured faster on CPU "
                    "(bench/cloud_backend.py)",
    )
    max_batch_size: int = Field(default=64, ge=1, description="most samples merged into one forward pass")
    max_queue_delay_ms: float = Field(
        default=2.0, ge=0.0, le=10_000.0,
        description="longest the oldest queued request waits for others to fill a batch",
    )
    max_queue_size: int = Field(
        default=1024, ge=1,
        description="most samples (not requests) waiting for compute; beyond it requests get 503 at once",
    )
    max_body_bytes: int = Field(default=16 * MIB, ge=1, description="largest body accepted (else 413)")
    token: SecretStr | None = Field(default=None, description="bearer token required for inference, if set")
    token_file: Path | None = Field(default=None, description="file whose first line is the bearer token")
    threads: int = Field(default_factory=default_threads, ge=1, description="backend intra-op threads")
    request_timeout_s: float = Field(
        default=30.0, gt=0.0,
        description="longest a request may wait for its result when it sends no X-Deadline-Ms (then 504)",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3600.0,
        description="longest a request body may take to arrive once its headers are in (then 408); "
                    "bounds slow-loris uploads",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0.0, le=3600.0,
        description="longest a connection may take to send complete request headers (then 408 and closed); "
                    "applied by `edgecloud cloud serve`",
    )
    ssl_certfile: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS with it")
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key of ssl_certfile")

    @field_validator("bundle")
    @classmethod
    def _bundle_is_a_bundle(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"bundle directory {value} does not exist")
        if not (value / "manifest.json").is_file():
            raise ValueError(f"bundle {value} has no manifest.json; is it a bundle from `edgecloud build`?")
        return value

    @field_validator("token_file", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{info.field_name} {value} does not exist")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> CloudSettings:
        # A key without a certificate (or the reverse) cannot serve TLS; say so at start, not at the first client.
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("set both ssl_certfile and ssl_keyfile to serve HTTPS, or neither")
        return self


@lru_cache
def get_settings() -> CloudSettings:
    """Settings from the environment, read once; tests and the CLI pass their own to create_app."""
    return CloudSettings()  # type: ignore[call-arg]  # bundle comes from EDGECLOUD_BUNDLE
