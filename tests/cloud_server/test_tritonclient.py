"""Interoperability: NVIDIA's tritonclient talks to a real uvicorn server on loopback.

The server runs in a background thread (fast); one slow test starts `edgecloud cloud serve` as a
subprocess, the way operators run it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.oip import decode_response, encode_request
from testbed.services import free_port, start_service, stop_service, wait_ready

httpclient = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def server_url(tiny_bundle: Path) -> Iterator[str]:
    port = free_port()
    settings = CloudSettings(bundle=tiny_bundle, threads=1, port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, name="cloud-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the cloud server did not start")
        time.sleep(0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def triton(server_url: str) -> Iterator[object]:
    client = httpclient.InferenceServerClient(url=server_url, network_timeout=10.0, connection_timeout=5.0)
    yield client
    client.close()


def test_tritonclient_health_and_metadata(triton: object) -> None:
    assert triton.is_server_live() and triton.is_server_ready()  # type: ignore[attr-defined]
    assert triton.is_model_ready("teacher")  # type: ignore[attr-defined]
    meta = triton.get_model_metadata("teacher")  # type: ignore[attr-defined]
    assert meta["inputs"][0] == {"name": "input", "datatype": "UINT8", "shape": [-1, 1, 8, 8]}
    assert [o["name"] for o in meta["outputs"]] == ["logits", "label"]
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_matches_onnxruntime(
        triton: object, binary: bool, tiny_test_split: tuple[np.ndarray, np.ndarray],
        teacher_reference: Callable[[np.ndarray], np.ndarray]) -> None:
    x = tiny_test_split[0][:16]
    tensor = httpclient.InferInput("input", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = None if binary else [httpclient.InferRequestedOutput(name, binary_data=False)
                                   for name in ("logits", "label")]
    result = triton.infer("teacher", [tensor], outputs=outputs, request_id="t-1")  # type: ignore[attr-defined]
    expected = teacher_reference(x)
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), expected.argmax(axis=1))
    assert result.get_response()["id"] == "t-1"


def test_tritonclient_sees_errors_as_messages(triton: object) -> None:
    from tritonclient.utils import InferenceServerException

    tensor = httpclient.InferInput("input", [1, 1, 8, 7], "UINT8")
    tensor.set_data_from_numpy(np.zeros((1, 1, 8, 7), dtype=np.uint8))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 1, 8, 8\]") as info:
        triton.infer("teacher", [tensor])  # type: ignore[attr-defined]
    assert info.value.status() == "400"


@pytest.mark.slow
def test_cli_serves_the_bundle_to_our_own_codec(
        tiny_bundle: Path, tmp_path: Path, tiny_test_split: tuple[np.ndarray, np.ndarray],
        teacher_reference: Callable[[np.ndarray], np.ndarray]) -> None:
    service = start_service("cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1",
                                      "--max-queue-delay-ms", "1"],
                            port=free_port(), log_dir=tmp_path, env={"EDGECLOUD_MAX_BATCH_SIZE": "16"})
    try:
        wait_ready(service, timeout_s=60)
        x = tiny_test_split[0][:4]
        body, headers = encode_request({"input": x})
        reply = httpx.post(f"{service.url}/v2/models/teacher/infer", content=body, headers=headers,
                           timeout=10)
        _, outputs = decode_response(reply.content, reply.headers)
        np.testing.assert_allclose(outputs["logits"], teacher_reference(x), rtol=1e-5, atol=1e-5)
    finally:
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it, so -15 is a clean exit here.
        assert stop_service(service) in (0, -15)
    log = service.log_tail(10_000)
    for line in ("bundle", "warmed up on backend onnx", "Uvicorn running on", "shutdown complete"):
        assert line in log, log
