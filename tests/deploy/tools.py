"""Where the deployment files live, and the system tools that validate them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
GRAFANA_DIR = DEPLOY_DIR / "grafana"
SYSTEMD_DIR = DEPLOY_DIR / "systemd"
INSTALL_SH = DEPLOY_DIR / "pi" / "install.sh"
METRICS_TXT = DEPLOY_DIR / "metrics.txt"
ARCHITECTURE_MD = REPO_ROOT / "docs" / "architecture.md"

# The Debian/Ubuntu package that provides each validator. A missing tool fails (never skips) the test:
# an unvalidated deployment file is exactly what these tests exist to prevent.
APT_PACKAGES: dict[str, str] = {
    "docker-compose": "docker-compose",
    "promtool": "prometheus",
    "systemd-analyze": "systemd",
    "shellcheck": "shellcheck",
}


def require_tool(name: str) -> str:
    """The tool's path, or a test failure that says how to install it."""
    path = shutil.which(name)
    if path is None:
        package = APT_PACKAGES.get(name, name)
        pytest.fail(
            f"{name} is not on PATH; it validates the files under deploy/. Install it with "
            f"`sudo apt-get install --no-install-recommends {package}` (Debian/Ubuntu package '{package}').",
            pytrace=False,
        )
    return path


def run_tool(args: Sequence[str | os.PathLike[str]], *, cwd: Path = REPO_ROOT,
             env: Mapping[str, str] | None = None,
             timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output; never raises on a non-zero exit."""
    return subprocess.run([os.fspath(a) for a in args], cwd=cwd, env=None if env is None else dict(env),
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """A failed command, its exit code and output, for an assertion message."""
    return (f"`{' '.join(result.args)}` exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
