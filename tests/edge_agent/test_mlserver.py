"""The edge's cloud client against Seldon MLServer, a third-party OIP server, over JSON.

MLServer pins an older FastAPI, so it lives in its own venv (.venv-mlserver, made by `make test`).
It serves the tiny teacher through the custom runtime in mlserver_runtime/; the edge must get the
same labels from it as from onnxruntime run directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_agent.agent import open_agent
from edge_agent.cloud_client import CloudClient
from edge_agent.settings import EdgeSettings
from shared.bundle import load_manifest
from testbed.services import free_port
from tests.conftest import REPO_ROOT
from tests.edge_agent.test_cloud_client import teacher_labels

MLSERVER = REPO_ROOT / ".venv-mlserver" / "bin" / "mlserver"
RUNTIME_DIR = Path(__file__).parent / "mlserver_runtime"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MLSERVER.is_file(), reason=f"{MLSERVER} is absent; `make test` creates .venv-mlserver"),
]


def export_teacher(bundle: Path, out: Path) -> None:
    """teacher.onnx's MatMul/Add initializers (in graph order) + the manifest's mean/std as an npz."""
    graph = onnx.load(bundle / "teacher.onnx").graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    layer = 0
    for node in graph.node:
        if node.op_type == "MatMul":
            arrays[f"W{layer}"] = inits[node.input[1]]
        elif node.op_type == "Add":
            arrays[f"b{layer}"] = inits[node.input[1]]
            layer += 1
        elif node.op_type not in ("Flatten", "Relu"):
            raise ValueError(f"the numpy runtime does not implement ONNX op {node.op_type}")
    manifest = load_manifest(bundle)
    np.savez(out, mean=np.asarray(manifest.input.mean), std=np.asarray(manifest.input.std), **arrays)


@pytest.fixture(scope="module")
def mlserver(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlserver")
    model_dir = root / "teacher"
    shutil.copytree(RUNTIME_DIR, model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    export_teacher(tiny_bundle, model_dir / "teacher.npz")
    http_port = free_port()
    env = {**os.environ, "MLSERVER_HTTP_PORT": str(http_port), "MLSERVER_GRPC_PORT": str(free_port()),
           "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_HOST": "127.0.0.1",
           "MLSERVER_PARALLEL_WORKERS": "0", "MLSERVER_LOAD_MODELS_AT_STARTUP": "true"}
    log_path = root / "mlserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(MLSERVER), "start", str(root)], stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlserver exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v2/models/teacher/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlserver not ready after 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.anyio
async def test_cloud_client_gets_teacher_labels_from_mlserver(mlserver: str, tiny_bundle: Path,
                                                              make_settings: Callable[..., EdgeSettings],
                                                              tiny_test_split: tuple[np.ndarray, np.ndarray]
                                                              ) -> None:
    x = tiny_test_split[0][:50]
    async with CloudClient(make_settings(cloud_url=mlserver, cloud_binary=False, read_timeout_s=5.0,
                                         deadline_ms=10_000), num_classes=10) as cloud:
        answer = await cloud.infer(x)
    np.testing.assert_array_equal(answer.labels, teacher_labels(tiny_bundle, x))


@pytest.mark.anyio
async def test_agent_streams_through_mlserver(mlserver: str, make_settings: Callable[..., EdgeSettings],
                                              tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]
                                              ) -> None:
    x = tiny_test_split[0][:120]
    settings = make_settings(cloud_url=mlserver, cloud_binary=False, read_timeout_s=5.0, deadline_ms=10_000)
    async with open_agent(settings) as agent:
        flagged = agent.engine.run(x).offload
        answers = [a async for a in agent.stream([x[i:i + 40] for i in range(0, 120, 40)])]
    labels = np.concatenate([a.labels for a in answers])
    sources = np.concatenate([a.sources for a in answers])
    assert set(sources[flagged]) == {"cloud"}
    np.testing.assert_array_equal(labels[flagged], teacher_labels(tiny_bundle, x[flagged]))


@pytest.mark.anyio
async def test_binary_tensors_to_mlserver_fail_cleanly(mlserver: str, make_settings: Callable[..., EdgeSettings]
                                                       ) -> None:
    # MLServer has no binary-tensor extension: the edge must say bad_response, not crash or hang.
    from edge_agent.cloud_client import FallbackReason, OffloadError

    async with CloudClient(make_settings(cloud_url=mlserver, cloud_binary=True), num_classes=10) as cloud:
        with pytest.raises(OffloadError) as info:
            await cloud.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8))
    assert info.value.reason is FallbackReason.BAD_RESPONSE
