"""Settings every server of the runtime has: where it listens, how much and how long it reads, TLS.

A service's settings class (CloudSettings, EdgeSettings) subclasses this and adds what its models
need; each field is declared once, with its default and a description, and the command-line
flags are generated from it (serving/cli.py). Environment variables `EDGECLOUD_<FIELD>` set any
field; a bad value stops start-up with a message naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
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


class ServerSettings(BaseSettings):
    """What any server of the runtime needs to listen and to bound what clients can make it do."""

    model_config = SettingsConfigDict(env_prefix="EDGECLOUD_", extra="ignore")

    host: str = Field(default="127.0.0.1", min_length=1, description="interface to listen on")
    max_body_bytes: int = Field(default=16 * MIB, ge=1, description="largest request body accepted (else 413)")
    body_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3600.0,
        description="longest a request body may take to arrive once its headers are in (then 408); bounds "
                    "slow-loris uploads")
    header_timeout_s: float = Field(
        default=10.0, gt=0.0, le=3600.0,
        description="longest a connection may take to send complete request headers (then 408 and closed); "
                    "applied by `edgecloud ... serve`")
    request_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3600.0,
        description="longest a request may wait for its result when it sends no X-Deadline-Ms (then 504)")
    ssl_certfile: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS with it")
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key of ssl_certfile")

    @field_validator("ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{info.field_name} {value} does not exist")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        # A key without a certificate (or the reverse) cannot serve TLS; say so at start, not at the first client.
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("set both ssl_certfile and ssl_keyfile to serve HTTPS, or neither")
        return self


def bundle_dir(value: Path) -> Path:
    """The check every service's `bundle` setting makes at start."""
    if not value.is_dir():
        raise ValueError(f"bundle directory {value} does not exist")
    if not (value / "manifest.json").is_file():
        raise ValueError(f"bundle {value} has no manifest.json; is it a bundle from `edgecloud build`?")
    return value


BundleDir = Annotated[Path, AfterValidator(bundle_dir)]
"""A `bundle` setting: a directory with a manifest.json, checked at start (`bundle_dir`)."""


def existing_file(value: Path) -> Path:
    """The check a file setting (a token file, a CA bundle) makes at start."""
    if not value.is_file():
        raise ValueError(f"file {value} does not exist")
    return value


ExistingFile = Annotated[Path, AfterValidator(existing_file)]
"""A setting naming a file that must exist at start (`existing_file`); pydantic's error names the setting."""
