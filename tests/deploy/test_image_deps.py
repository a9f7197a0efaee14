"""The default cloud image installs only the `cloud` extra (see the Dockerfile), so the image's command must
start and answer with nothing else: every module that only the other extras bring is made unimportable in
the server's process, and the server still serves the bundle's ONNX teacher."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared.bundle import load_manifest
from shared.datasets import normalize
from shared.oip import decode_response, encode_request
from testbed.services import Service, free_port, stop_service, wait_ready
from tests.deploy.tools import DEPLOY_DIR, REPO_ROOT, explain, require_tool, run_tool

IMAGE_EXTRAS = ("cloud",)

# A meta-path finder that refuses the modules in argv[1] (comma-separated), then the real CLI.
PRELUDE = """
import sys
blocked = frozenset(sys.argv[1].split(","))
class NotInImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            # What Python raises for a module that is not installed: optional imports catch exactly this.
            raise ModuleNotFoundError(f"{name} is not installed in the default cloud image", name=name)
        return None
sys.meta_path.insert(0, NotInImage())
from edgecloud.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def _closure(requirements: Iterable[str]) -> set[str]:
    """Canonical names of the distributions `requirements` pull in, transitively, as installed here."""
    seen: set[str] = set()
    pending = [(Requirement(r), "") for r in requirements]
    while pending:
        requirement, via_extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": via_extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here, so nothing below it can be imported either
        for extra in ["", *requirement.extras]:
            pending += [(Requirement(r), extra) for r in requires]
    return seen


def modules_outside_the_image() -> frozenset[str]:
    """Top-level modules that the project's other extras install and the image's set does not."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    # The image installs the project itself; an extra made of other extras (demo = edgecloud[edge,cloud])
    # names it, and must not make its own packages look absent.
    in_image = _closure([project["name"], *project["dependencies"],
                         *(r for e in IMAGE_EXTRAS for r in extras[e])])
    everything = _closure([r for requirements in extras.values() for r in requirements])
    outside = everything - in_image
    modules = metadata.packages_distributions()
    return frozenset(module for module, dists in modules.items()
                     if {canonicalize_name(d) for d in dists} <= outside and not module.startswith("_"))


def test_the_image_leaves_out_torch_and_the_training_stack() -> None:
    assert {"torch", "sklearn", "onnx", "xgboost", "pytest"} <= modules_outside_the_image()
    assert not {"onnxruntime", "fastapi", "numpy", "pydantic", "uvicorn"} & modules_outside_the_image()


def test_the_blocker_blocks(tmp_path: Path) -> None:
    prelude = PRELUDE.replace("from edgecloud.cli import main", "import sklearn.svm")
    result = subprocess.run([sys.executable, "-c", prelude, "sklearn"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "sklearn is not installed in the default cloud image" in result.stderr


@pytest.fixture
def image_server(tiny_bundle: Path, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    log_path = tmp_path / "cloud.log"
    # The image's CMD with its defaults (backend onnx), on a free loopback port.
    args = [sys.executable, "-c", PRELUDE, ",".join(sorted(modules_outside_the_image())),
            "cloud", "serve", "--bundle", str(tiny_bundle), "--host", "127.0.0.1", "--port", str(port),
            "--threads", "1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   start_new_session=True)
    service = Service("cloud (image deps)", f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(service, timeout_s=90)
        yield service
    finally:
        stop_service(service)


@pytest.mark.slow
def test_the_cloud_extra_alone_serves_the_onnx_teacher(image_server: Service, tiny_bundle: Path,
                                                       tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = tiny_test_split
    body, headers = encode_request({"input": x[:4]})
    reply = httpx.post(f"{image_server.url}/v2/models/teacher/infer", content=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    _, outputs = decode_response(reply.content, reply.headers)
    manifest = load_manifest(tiny_bundle)
    session = ort.InferenceSession(str(tiny_bundle / "teacher.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(["logits"], {"input": normalize(x[:4], manifest.input.mean, manifest.input.std)})
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-4, atol=1e-5)
    assert image_server.process.poll() is None, image_server.log_tail()


def test_the_size_script_is_clean_and_explains_itself() -> None:
    script = DEPLOY_DIR / "measure_deps.sh"
    result = run_tool([require_tool("shellcheck"), "--severity=style", script])
    assert result.returncode == 0, explain(result)
    result = run_tool(["bash", script, "--help"])
    assert result.returncode == 0, explain(result)
    for option in ("--python", "--torch-version", "--work-dir", "--keep", "WITH_TORCH=true", "du -sb"):
        assert option in result.stdout, f"--help does not mention {option}"
    result = run_tool(["bash", script, "--frobnicate"])
    assert result.returncode == 2 and "unknown argument '--frobnicate'" in result.stderr, explain(result)
