"""Which Pythons edgecloud runs on, checked at every door: pip, make, the Pi installer, the package's import.

Python 3.14 is refused because its standard library has a top-level `compression` package (PEP 784);
edgecloud/__init__.py says why. The newest Python this machine has, 3.13, gets a real install in its own
venv (.venv-py313, made by `make test`) with the edge and cloud extras, and serves a bundle.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import edgecloud
from edgecloud import UnsupportedPythonError, check_python, supported_range
from testbed.services import Service, free_port, stop_service, wait_ready
from tests.conftest import REPO_ROOT

INSTALL_SH = REPO_ROOT / "deploy" / "pi" / "install.sh"
# The Makefile's NEWEST_VENV.
PY313_VENV = REPO_ROOT / ".venv-py313"
PY313 = PY313_VENV / "bin" / "python"
# Below, inside and above the supported range, with patch levels, and the first refused release.
VERSIONS = [(3, 9, 18), (3, 10, 13), (3, 11, 0), (3, 11, 7), (3, 12, 1), (3, 13, 0), (3, 13, 9), (3, 14, 0),
            (3, 15, 2), (4, 0, 0)]


def _accepts(version: tuple[int, ...]) -> bool:
    try:
        check_python(version)
    except UnsupportedPythonError:
        return False
    return True


def _requires_python() -> str:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]


def _fake_python(tmp_path: Path, version: str) -> Path:
    """An executable that answers the Makefile's version probe with `version` (and does nothing else)."""
    fake = tmp_path / f"python-{version}"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _run(args: list[str | Path], *, cwd: Path, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                          check=False)


# --- the import-time guard ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [(3, 11, 0), (3, 12, 1), (3, 13, 0, "final", 0)])
def test_the_guard_accepts_the_supported_versions(version: tuple[int, ...]) -> None:
    assert _accepts(version)


def test_the_guard_refuses_314_naming_the_version_the_range_and_the_collision() -> None:
    with pytest.raises(UnsupportedPythonError) as caught:
        check_python((3, 14, 0, "final", 0))
    message = str(caught.value)
    assert "Python 3.14.0" in message and ">=3.11,<3.14" in message
    assert "PEP 784" in message and "'compression'" in message


@pytest.mark.parametrize("version", [(3, 10, 13), (2, 7, 18)])
def test_the_guard_refuses_old_versions_without_blaming_pep_784(version: tuple[int, ...]) -> None:
    with pytest.raises(UnsupportedPythonError) as caught:
        check_python(version)
    found = ".".join(map(str, version))
    assert f"Python {found}" in str(caught.value) and "PEP 784" not in str(caught.value)


def test_the_guard_runs_when_the_package_is_imported(tmp_path: Path) -> None:
    # sys.version_info is swapped before the first import of edgecloud, as 3.14 would present itself;
    # edgecloud.cli is what the `edgecloud` command imports, the servers included.
    probe = ("import sys; sys.version_info = (3, 14, 0, 'final', 0); "
             f"sys.path.insert(0, {str(REPO_ROOT)!r}); import edgecloud.cli")
    result = _run([sys.executable, "-c", probe], cwd=tmp_path)
    assert result.returncode == 1
    assert "edgecloud.UnsupportedPythonError: edgecloud does not run on Python 3.14.0" in result.stderr
    assert "compression.search" not in result.stderr, "it must stop before our compression package is reached"


# --- the three doors agree ------------------------------------------------------------------------


def test_requires_python_is_the_guards_range() -> None:
    assert SpecifierSet(_requires_python()) == SpecifierSet(supported_range())
    for version in VERSIONS:
        assert (Version(".".join(map(str, version))) in SpecifierSet(_requires_python())) == _accepts(version)


def test_make_refuses_the_versions_the_guard_refuses(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make is not None, "make is not on PATH"
    for version in VERSIONS:
        major_minor = ".".join(map(str, version[:2]))
        result = _run([make, "-s", "check-python", f"PYTHON={_fake_python(tmp_path, major_minor)}"], cwd=REPO_ROOT)
        assert (result.returncode == 0) == _accepts(version), (version, result.stderr)
        if result.returncode != 0:
            assert f"is Python {major_minor}; edgecloud supports Python {supported_range()}" in result.stderr
            assert ("PEP 784" in result.stderr) == (version[:2] >= edgecloud.FIRST_UNSUPPORTED_PYTHON)


def test_the_pi_installer_refuses_the_versions_the_guard_refuses(tmp_path: Path) -> None:
    # --dry-run: an accepted Python only gets as far as printing the steps.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECLOUD_")}
    for version in VERSIONS:
        major_minor = ".".join(map(str, version[:2]))
        result = subprocess.run(["bash", str(INSTALL_SH), "--root", str(tmp_path / "root"), "--allow-any-arch",
                                 "--dry-run", "--python", str(_fake_python(tmp_path, major_minor))],
                                capture_output=True, text=True, timeout=60, env=env, check=False)
        assert (result.returncode == 0) == _accepts(version), (version, result.stderr)
        if result.returncode != 0:
            assert f"is Python {major_minor}; edgecloud needs Python {supported_range()}" in result.stderr


def test_make_creates_no_venv_from_python_314(tmp_path: Path) -> None:
    # A copy of the Makefile in a scratch folder: were the check missing, the recipe would go on to make a
    # venv there (and fail), never in the checkout.
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, work / name)
    fake = _fake_python(tmp_path, "3.14")
    result = _run(["make", "-s", ".venv/.installed", f"PYTHON={fake}"], cwd=work)
    assert result.returncode != 0
    assert f"is Python 3.14; edgecloud supports Python {supported_range()}" in result.stderr
    assert not (work / ".venv").exists()


# --- pip, on the built wheel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, REPO_ROOT],
                  cwd=out, timeout_s=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("edgecloud-*.whl")
    return built


def _pip_dry_run(wheel: Path, python_version: str, target: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--only-binary=:all:",
                 "--python-version", python_version, "--target", target, wheel], cwd=target.parent)


def test_pip_refuses_the_wheel_for_python_314_naming_the_requirement(wheel: Path, tmp_path: Path) -> None:
    result = _pip_dry_run(wheel, "3.14", tmp_path / "target")
    assert result.returncode != 0
    assert "requires a different Python" in result.stderr
    assert str(SpecifierSet(_requires_python())) in result.stderr


def test_pip_takes_the_wheel_for_python_313(wheel: Path, tmp_path: Path) -> None:
    result = _pip_dry_run(wheel, "3.13", tmp_path / "target")
    assert result.returncode == 0, result.stderr
    assert "Would install edgecloud-" in result.stdout


# --- a real install on Python 3.13 ----------------------------------------------------------------

needs_py313 = pytest.mark.skipif(not PY313.is_file(), reason=f"{PY313} is absent; `make test` creates .venv-py313")


@needs_py313
def test_the_313_venv_is_313_without_torch(tmp_path: Path) -> None:
    probe = ("import sys, importlib.util; print('%d.%d' % sys.version_info[:2]); "
             "print(importlib.util.find_spec('torch') is None)")
    result = _run([PY313, "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3.13", "True"]


@needs_py313
def test_edge_agent_and_cloud_server_import_on_313(tmp_path: Path) -> None:
    # From a scratch folder, so the imports go through the install, not the checkout on sys.path[0].
    probe = ("import edge_agent.app, edge_agent.agent, cloud_server.main, edgecloud.cli, sys; "
             "assert 'torch' not in sys.modules; print(edge_agent.app.__file__)")
    result = _run([PY313, "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(REPO_ROOT)


@needs_py313
@pytest.mark.parametrize("command", [[], ["cloud", "serve"], ["edge", "serve"], ["edge", "run"]])
def test_edgecloud_help_works_on_313(command: list[str], tmp_path: Path) -> None:
    result = _run([PY313_VENV / "bin" / "edgecloud", *command, "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: edgecloud {' '.join(command)}".rstrip())


@pytest.fixture
def cloud_on_313(tiny_bundle: Path, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    log_path = tmp_path / "cloud.log"
    args = [str(PY313), "-m", "edgecloud", "cloud", "serve", "--bundle", str(tiny_bundle),
            "--host", "127.0.0.1", "--port", str(port), "--threads", "1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                   start_new_session=True)
    service = Service("cloud (3.13)", f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(service, timeout_s=90)
        yield service
    finally:
        stop_service(service)


@needs_py313
@pytest.mark.slow
def test_edge_offloads_to_the_cloud_both_on_313(cloud_on_313: Service, tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    result = _run([PY313_VENV / "bin" / "edgecloud", "edge", "run", "--bundle", tiny_bundle,
                   "--cloud-url", cloud_on_313.url, "--dataset", "digits", "--out", out, "--limit", "40",
                   "--strategy", "cloud_only", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "answered  40" in result.stdout and "by source cloud=40" in result.stdout, result.stdout

