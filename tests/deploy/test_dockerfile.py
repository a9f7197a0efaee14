"""The cloud image's Dockerfile, read statically (no Docker daemon needed): what it installs and runs."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass

import pytest
import yaml

from tests.deploy.compose import COMPOSE_FILE
from tests.deploy.tools import REPO_ROOT

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


def test_base_is_slim_python_311_and_torch_defaults_to_cpu(instructions: list[Instruction]) -> None:
    defaults = _arg_defaults(instructions)
    assert _all(instructions, "FROM") == ["${BASE}"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", defaults["BASE"]), defaults["BASE"]
    assert defaults["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"


def test_torch_comes_from_its_index_before_the_extras(instructions: list[Instruction]) -> None:
    runs = _all(instructions, "RUN")
    torch = next(i for i, r in enumerate(runs) if '--index-url "${TORCH_INDEX}"' in r and "torch==" in r)
    extras = next(i for i, r in enumerate(runs) if "pip install" in r and ".[cloud,train]" in r)
    assert torch < extras, "torch must be installed first, or pip resolves the CUDA wheel from PyPI"


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


def test_copies_everything_pip_needs_and_dockerignore_keeps_it(instructions: list[Instruction]) -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {src for args in _all(instructions, "COPY") for src in args.split()[:-1]}
    needed = {"pyproject.toml", pyproject["project"]["readme"], *packages}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for path in copied:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f"{path} is .dockerignored"


def test_dockerignore_keeps_venvs_data_and_secrets_out_of_the_context() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".git", ".venv", "artifacts", "deploy/secrets"} <= ignored
