"""Run Compose's own validator on docker-compose.yml and read back the resolved file."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import REPO_ROOT, require_tool, run_tool

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# Variables the compose file interpolates; cleared so the tests see the shipped defaults.
_USER_PREFIXES = ("EDGECLOUD_", "GRAFANA_", "PROMETHEUS_", "COMPOSE_")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def compose_command() -> list[str]:
    """`docker-compose` (Debian's package, v1 or v2) or else the `docker compose` plugin."""
    if shutil.which("docker-compose") is None and shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return [require_tool("docker-compose")]


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_USER_PREFIXES)}
    return {**env, **overrides}


def compose_config(compose_file: Path = COMPOSE_FILE, *, quiet: bool = False,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with the repo as project directory (so relative paths resolve there)."""
    args = [*compose_command(), "--project-directory", str(REPO_ROOT), "-f", str(compose_file), "config"]
    if quiet:
        args.append("-q")
    return run_tool(args, env=clean_env() if env is None else env)


def resolved_config(**env_overrides: str) -> dict[str, Any]:
    """The compose file after interpolation and path resolution, as Compose itself prints it."""
    result = compose_config(env=clean_env(**env_overrides))
    if result.returncode != 0:
        pytest.fail(f"docker-compose config failed:\n{result.stderr}", pytrace=False)
    return yaml.safe_load(result.stdout)


def mounts(service: dict[str, Any]) -> list[Mount]:
    """A service's volumes, from either Compose v1's short form or v2's long form."""
    found: list[Mount] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            mode = parts[2] if len(parts) > 2 else "rw"
            found.append(Mount(parts[0], parts[1], "ro" in mode.split(",")))
        else:
            found.append(Mount(str(volume["source"]), str(volume["target"]), bool(volume.get("read_only"))))
    return found


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port."""
    ports: dict[int, int] = {}
    for port in service.get("ports", []):
        if isinstance(port, str):
            host, container = port.rsplit(":", 1)
            ports[int(container)] = int(host.rsplit(":", 1)[-1])
        else:
            ports[int(port["target"])] = int(port["published"])
    return ports
