"""The cloud image's Dockerfile, read statically (no Docker daemon needed): what it installs and runs."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from setuptools import find_packages

from tests.deploy.compose import COMPOSE_FILE, resolved_config
from tests.deploy.tools import REPO_ROOT, run_tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
SERVE_CMD = ["edgecloud", "cloud", "serve", "--bundle", "/bundle", "--host", "0.0.0.0", "--port", "8001"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _all(instructions: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in instructions if i.keyword == keyword]


def _arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in _all(instructions, "ARG") if "=" in a)


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM x\nRUN a \\\n  # inside\n  && b\nCMD [\"y\"]\n")
    assert parsed == [Instruction("FROM", "x"), Instruction("RUN", "a && b"), Instruction("CMD", '["y"]')]


def _torch_step(instructions: list[Instruction]) -> str:
    (step,) = [r for r in _all(instructions, "RUN") if "torch==" in r]
    return step


def _package_install(instructions: list[Instruction]) -> str:
    (step,) = [r for r in _all(instructions, "RUN") if "pip install" in r and '".[' in r]
    return step


def test_base_is_slim_python_311_and_torch_is_opt_in_cpu(instructions: list[Instruction]) -> None:
    defaults = _arg_defaults(instructions)
    assert _all(instructions, "FROM") == ["${BASE}"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", defaults["BASE"]), defaults["BASE"]
    assert defaults["WITH_TORCH"] == "false", "the default image serves onnx and needs no torch"
    assert defaults["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"torch=={defaults['TORCH_VERSION']}" in makefile, "the image's torch is the one the tests use"


def test_the_image_installs_only_the_cloud_extra(instructions: list[Instruction]) -> None:
    extras = re.search(r'"\.\[([\w,]+)\]"', _package_install(instructions))
    assert extras is not None and extras.group(1).split(",") == ["cloud"]


def test_torch_comes_from_its_index_before_the_package(instructions: list[Instruction]) -> None:
    runs = _all(instructions, "RUN")
    assert runs.index(_torch_step(instructions)) < runs.index(_package_install(instructions)), (
        "torch must be installed first, or pip resolves the CUDA wheel from PyPI")
    copies = [i for i, ins in enumerate(instructions) if ins.keyword == "COPY"]
    torch_at = next(i for i, ins in enumerate(instructions) if ins.args == _torch_step(instructions))
    assert torch_at < min(copies), "a code change would reinstall torch"


def _run_torch_step(step: str, tmp_path: Path, **build_args: str) -> tuple[int, str, list[list[str]]]:
    """Run the RUN line in sh as Docker does (ARGs are its environment), `python` replaced by a recorder."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir(exist_ok=True)
    calls.unlink(missing_ok=True)
    recorder = bin_dir / "python"
    recorder.write_text(f"#!/usr/bin/env python3\nimport json, sys\n"
                        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **build_args}
    result = run_tool(["sh", "-c", step], env=env, timeout_s=30)
    recorded = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result.returncode, result.stdout + result.stderr, recorded


def test_the_torch_step_installs_torch_only_when_asked(instructions: list[Instruction], tmp_path: Path) -> None:
    step, defaults = _torch_step(instructions), _arg_defaults(instructions)
    common = {"TORCH_INDEX": defaults["TORCH_INDEX"], "TORCH_VERSION": defaults["TORCH_VERSION"]}

    code, output, calls = _run_torch_step(step, tmp_path, WITH_TORCH="false", **common)
    assert code == 0, output
    assert calls == []

    code, output, calls = _run_torch_step(step, tmp_path, WITH_TORCH="true", **common)
    assert code == 0, output
    assert calls == [["-m", "pip", "install", "--index-url", defaults["TORCH_INDEX"],
                      f"torch=={defaults['TORCH_VERSION']}"]]

    code, output, calls = _run_torch_step(step, tmp_path, WITH_TORCH="yes", **common)
    assert code == 2 and calls == []
    assert "WITH_TORCH must be true or false, not 'yes'" in output


def test_compose_passes_the_torch_build_argument_through() -> None:
    assert resolved_config()["services"]["cloud"]["build"]["args"]["WITH_TORCH"] == "false"
    args = resolved_config(EDGECLOUD_WITH_TORCH="true")["services"]["cloud"]["build"]["args"]
    assert args["WITH_TORCH"] == "true"


def test_runs_as_an_unprivileged_user(instructions: list[Instruction]) -> None:
    users = _all(instructions, "USER")
    assert users, "no USER: the server would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any("useradd" in r and users[-1].split(":")[0] in r for r in _all(instructions, "RUN"))


def test_serves_the_mounted_bundle_on_the_exposed_port(instructions: list[Instruction]) -> None:
    assert json.loads(_all(instructions, "CMD")[-1]) == SERVE_CMD
    assert _all(instructions, "EXPOSE") == ["8001"]


def test_healthcheck_polls_readiness_with_python_like_compose(instructions: list[Instruction]) -> None:
    (healthcheck,) = _all(instructions, "HEALTHCHECK")
    exec_form = json.loads(healthcheck[healthcheck.index("CMD ") + 4:])
    assert exec_form[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8001/v2/health/ready" in exec_form[2]
    compose_test = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["cloud"]["healthcheck"]["test"]
    assert compose_test == ["CMD", *exec_form], "the image and compose should probe readiness the same way"


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _installed_top_level_packages() -> set[str]:
    """The top-level packages `pip install .` installs: setuptools' own find with pyproject's include."""
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return {name.split(".")[0] for name in find_packages(where=REPO_ROOT, include=include)}


def _copies(instructions: list[Instruction]) -> dict[str, str]:
    """Each COPY source and its destination (every COPY here has one source or ends in ./)."""
    pairs: dict[str, str] = {}
    for args in _all(instructions, "COPY"):
        *sources, dest = args.split()
        for source in sources:
            pairs[source] = dest
    return pairs


def test_every_package_pyproject_installs_is_copied_to_its_own_folder(instructions: list[Instruction]) -> None:
    packages = _installed_top_level_packages()
    assert {"edgecloud", "shared", "networks", "compression", "cloud_server"} <= packages
    copies = _copies(instructions)
    missing = sorted(p for p in packages if p not in copies)
    assert not missing, f"pyproject.toml installs {missing} but the Dockerfile does not COPY them"
    misplaced = {p: copies[p] for p in packages if copies[p].rstrip("/") not in (f"./{p}", p)}
    assert not misplaced, f"COPY must keep each package's folder name: {misplaced}"


def test_every_package_folder_is_installed_by_pyproject() -> None:
    # So a new top-level package reaches the image only through pyproject.toml's include, and the test
    # above then asks for its COPY line.
    folders = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")} - {"tests"}
    missing = sorted(folders - _installed_top_level_packages())
    assert not missing, f"top-level packages not in [tool.setuptools.packages.find] include: {missing}"


def test_copies_what_pip_reads_and_dockerignore_keeps_it(instructions: list[Instruction]) -> None:
    copied = set(_copies(instructions))
    needed = {"pyproject.toml", _pyproject()["project"]["readme"]}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for path in copied:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f"{path} is .dockerignored"


def test_dockerignore_keeps_venvs_data_and_secrets_out_of_the_context() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".git", ".venv", "artifacts", "deploy/secrets"} <= ignored
