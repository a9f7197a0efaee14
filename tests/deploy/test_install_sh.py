"""deploy/pi/install.sh: refuses what it cannot install, and installs an edge-only venv, idempotently."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.systemd_unit import verify
from tests.deploy.tools import INSTALL_SH, REPO_ROOT, SYSTEMD_DIR, explain, require_tool, run_tool

UNIT_NAME = "edgecloud-edge.service"


def install(*args: str | Path, arch: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECLOUD_")}
    if arch is not None:
        env["EDGECLOUD_ARCH"] = arch
    return run_tool(["bash", INSTALL_SH, *args], env=env, timeout_s=540)


def _fake_python(tmp_path: Path, version: str) -> Path:
    fake = tmp_path / "python-fake"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def test_shellcheck_finds_nothing() -> None:
    result = run_tool([require_tool("shellcheck"), "--severity=style", INSTALL_SH])
    assert result.returncode == 0, explain(result)


def test_help_explains_every_option() -> None:
    result = install("--help")
    assert result.returncode == 0, explain(result)
    for option in ("--source", "--python", "--bundle", "--root", "--prefix", "--allow-any-arch", "--dry-run"):
        assert option in result.stdout, f"--help does not mention {option}"
    assert "systemctl enable --now edgecloud-edge" in result.stdout


def test_unknown_argument_is_a_usage_error(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--frobnicate")
    assert result.returncode == 2, explain(result)
    assert "unknown argument '--frobnicate'" in result.stderr


def test_refuses_an_old_python_and_touches_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = install("--root", root, "--allow-any-arch", "--python", _fake_python(tmp_path, "3.9"))
    assert result.returncode == 1, explain(result)
    assert "is Python 3.9; edgecloud needs Python >=3.11,<3.14" in result.stderr
    assert _tree(root) == []


def test_refuses_python_314_naming_the_collision_and_touches_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = install("--root", root, "--allow-any-arch", "--python", _fake_python(tmp_path, "3.14"))
    assert result.returncode == 1, explain(result)
    assert "is Python 3.14; edgecloud needs Python >=3.11,<3.14" in result.stderr
    assert "'compression'" in result.stderr and "PEP 784" in result.stderr
    assert _tree(root) == []


def test_refuses_a_missing_python(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--allow-any-arch", "--python", tmp_path / "no-such-python")
    assert result.returncode == 1, explain(result)
    assert "not found; pass --python PATH" in result.stderr


def test_refuses_a_machine_that_is_not_a_pi(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--python", sys.executable, arch="x86_64")
    assert result.returncode == 1, explain(result)
    assert "architecture 'x86_64' is not a Raspberry Pi's" in result.stderr
    assert "--allow-any-arch" in result.stderr
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("arch", ["aarch64", "armv7l"])
def test_accepts_both_pi_architectures(tmp_path: Path, arch: str) -> None:
    result = install("--root", tmp_path, "--python", sys.executable, "--dry-run", arch=arch)
    assert result.returncode == 0, explain(result)
    # 32-bit Raspberry Pi OS has no onnxruntime wheel on PyPI: say so up front.
    warned = "PIP_FIND_LINKS" in result.stderr
    assert warned == (arch == "armv7l"), explain(result)


def test_dry_run_changes_nothing_and_installs_only_the_edge_extra(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--allow-any-arch", "--python", sys.executable, "--dry-run")
    assert result.returncode == 0, explain(result)
    assert _tree(tmp_path) == []
    assert f"pip install --upgrade {REPO_ROOT}[edge]" in result.stderr
    assert "[train" not in result.stderr and "cloud]" not in result.stderr
    assert "+ systemctl" not in result.stderr, "--root must never call systemctl"
    assert "+ useradd" not in result.stderr, "--root must never create users"


def test_dry_run_on_the_real_root_plans_the_user_and_the_daemon_reload() -> None:
    venv = Path("/opt/edgecloud/venv")
    existed = venv.exists()
    result = install("--allow-any-arch", "--python", sys.executable, "--dry-run")
    assert result.returncode == 0, explain(result)
    assert "+ systemctl daemon-reload" in result.stderr
    assert "+ useradd" in result.stderr or "user edgecloud exists" in result.stderr
    assert f"+ {sys.executable} -m venv {venv}" in result.stderr or existed
    assert venv.exists() == existed
    # Starting the agent is the user's call, once the bundle, token and cloud URL are in place.
    assert "+ systemctl enable" not in result.stderr


@pytest.mark.parametrize(("source", "requirement"), [
    ("edgecloud", "edgecloud[edge]"),
    ("edgecloud==0.1.0", "edgecloud[edge]==0.1.0"),
])
def test_a_package_spec_gets_the_edge_extra(tmp_path: Path, source: str, requirement: str) -> None:
    result = install("--root", tmp_path, "--allow-any-arch", "--python", sys.executable, "--dry-run",
                     "--source", source)
    assert result.returncode == 0, explain(result)
    assert f"pip install --upgrade {requirement}\n" in result.stderr


def test_a_missing_source_path_is_refused(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--allow-any-arch", "--python", sys.executable, "--dry-run",
                     "--source", tmp_path / "nowhere")
    assert result.returncode == 1, explain(result)
    assert "does not exist" in result.stderr


def test_a_spec_with_its_own_extras_is_refused(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--allow-any-arch", "--python", sys.executable, "--dry-run",
                     "--source", "edgecloud[train]")
    assert result.returncode == 1, explain(result)
    assert "leave out the extras" in result.stderr


def test_a_bundle_without_manifest_is_refused(tmp_path: Path) -> None:
    result = install("--root", tmp_path, "--allow-any-arch", "--python", sys.executable, "--dry-run",
                     "--bundle", tmp_path)
    assert result.returncode == 1, explain(result)
    assert "has no manifest.json" in result.stderr


# --- a real install into a temporary root, twice ------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    root: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    edited_env: str

    @property
    def venv_python(self) -> Path:
        return self.root / "opt" / "edgecloud" / "venv" / "bin" / "python"

    def run_in_venv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_tool([self.venv_python, *args], cwd=self.root)


def _copy_source(dest: Path) -> Path:
    """Just what pip needs, so the build never writes into the checkout (build/, *.egg-info)."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dest.mkdir()
    for name in ("pyproject.toml", pyproject["project"]["readme"]):
        if (REPO_ROOT / name).is_file():
            shutil.copy(REPO_ROOT / name, dest / name)
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(REPO_ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Installed:
    base = tmp_path_factory.mktemp("install")
    source = _copy_source(base / "src")
    root = base / "root"
    root.mkdir()
    common = ("--root", root, "--allow-any-arch", "--python", sys.executable, "--source", source)
    first = install(*common)
    if first.returncode != 0:
        pytest.fail(explain(first), pytrace=False)
    env_file = root / "etc" / "edgecloud" / "edge.env"
    edited = "EDGECLOUD_CLOUD_URL=http://cloud.test:8001\n"
    env_file.write_text(edited)
    second = install(*common, "--bundle", tiny_bundle)
    if second.returncode != 0:
        pytest.fail(explain(second), pytrace=False)
    return Installed(root=root, first=first, second=second, edited_env=edited)


@pytest.mark.slow
def test_the_edge_venv_has_no_torch(installed: Installed) -> None:
    result = installed.run_in_venv("-c", "import torch")
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr, explain(result)


@pytest.mark.slow
def test_the_edge_venv_runs_the_edge_stack(installed: Installed) -> None:
    result = installed.run_in_venv("-c", "import onnxruntime, sklearn, httpx, fastapi, shared, edge_agent")
    assert result.returncode == 0, explain(result)


@pytest.mark.slow
def test_the_installed_cli_runs(installed: Installed) -> None:
    result = run_tool([installed.venv_python.parent / "edgecloud", "--help"], cwd=installed.root)
    assert result.returncode == 0, explain(result)
    assert "edge" in result.stdout


@pytest.mark.slow
def test_second_run_reuses_the_venv_and_keeps_the_users_settings(installed: Installed) -> None:
    assert "reusing the venv" in installed.second.stderr
    env_file = installed.root / "etc" / "edgecloud" / "edge.env"
    assert env_file.read_text() == installed.edited_env
    assert "keeping" in installed.second.stderr
    example = installed.root / "etc" / "edgecloud" / "edge.env.example"
    assert example.read_text() == (SYSTEMD_DIR / "edge.env.example").read_text()


@pytest.mark.slow
def test_first_run_creates_a_private_env_file_from_the_example(installed: Installed) -> None:
    assert "install -m 0600" in installed.first.stderr and "edge.env\n" in installed.first.stderr
    mode = stat.S_IMODE((installed.root / "etc" / "edgecloud" / "edge.env").stat().st_mode)
    assert mode == 0o600


@pytest.mark.slow
def test_the_bundle_is_copied_whole(installed: Installed, tiny_bundle: Path) -> None:
    bundle = installed.root / "var" / "lib" / "edgecloud" / "bundle"
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == sorted(
        p.relative_to(tiny_bundle) for p in tiny_bundle.rglob("*"))
    assert (bundle / "manifest.json").read_bytes() == (tiny_bundle / "manifest.json").read_bytes()
    assert not (bundle.parent / "bundle.new").exists()


@pytest.mark.slow
def test_the_installed_unit_runs_the_installed_agent(installed: Installed, tmp_path: Path) -> None:
    unit = installed.root / "etc" / "systemd" / "system" / UNIT_NAME
    assert unit.read_text() == (SYSTEMD_DIR / UNIT_NAME).read_text()
    # Under a test root the venv sits below it: the unit's ExecStart path plus the root must exist.
    result = verify(unit, binary=installed.venv_python.parent / "edgecloud", workdir=tmp_path)
    assert result.returncode == 0 and result.stderr == "", explain(result)
