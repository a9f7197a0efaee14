"""Bad input never gives a 500: each case answers a 4xx with {"error": ...} naming the problem."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud_server.settings import CloudSettings
from shared.oip import HEADER_LENGTH, encode_request

INFER = "/v2/models/teacher/infer"
GOOD = np.zeros((2, 1, 8, 8), dtype=np.uint8)


def _json(header: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(header).encode(), {"Content-Type": "application/json"}


def _binary_input(shape: list[int], datatype: str, payload: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": datatype,
                                   "parameters": {"binary_data_size": len(payload)}}]}).encode()
    return head + payload, {HEADER_LENGTH: str(len(head))}


def _nan_input() -> tuple[bytes, dict[str, str]]:
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    x[0, 0, 3, 3] = np.nan
    return encode_request({"input": x})


CASES: dict[str, tuple[Callable[[], tuple[bytes, dict[str, str]]], int, tuple[str, ...]]] = {
    "empty body": (lambda: (b"", {}), 400, ("empty body",)),
    "unparseable json": (lambda: (b'{"inputs": [', {}), 400, ("not valid JSON",)),
    "json array": (lambda: (b"[]", {}), 400, ("JSON object",)),
    "no inputs field": (lambda: _json({"outputs": []}), 422, ("inputs",)),
    "lying header length": (lambda: (encode_request({"input": GOOD})[0], {HEADER_LENGTH: "99999"}), 400,
                            (HEADER_LENGTH, "99999")),
    "missing binary bytes": (lambda: (encode_request({"input": GOOD})[0][:-10],
                                      encode_request({"input": GOOD})[1]), 400, ("118 bytes follow",)),
    "wrong byte count": (lambda: _binary_input([2, 1, 8, 8], "UINT8", b"\x00" * 100), 400,
                         ("'input'", "needs 128 bytes, got 100")),
    "wrong shape": (lambda: encode_request({"input": np.zeros((2, 1, 8, 9), dtype=np.uint8)}), 400,
                    ("'input'", "[-1, 1, 8, 8]", "[2, 1, 8, 9]")),
    "wrong rank": (lambda: encode_request({"input": np.zeros((64,), dtype=np.uint8)}), 400,
                   ("expected shape [-1, 1, 8, 8], got [64]",)),
    "wrong datatype": (lambda: encode_request({"input": GOOD.astype(np.int32)}), 400,
                       ("'input'", "INT32", "UINT8", "FP32")),
    "unknown datatype": (lambda: _binary_input([1], "COMPLEX64", b"\x00" * 8), 400, ("unknown datatype",)),
    "nan": (_nan_input, 400, ("'input'", "NaN")),
    "wrong input name": (lambda: encode_request({"image": GOOD}), 400, ("no input 'image'", "'input'")),
    "extra input": (lambda: encode_request({"input": GOOD, "mask": GOOD}), 400, ("no input 'mask'",)),
    "unknown output": (lambda: encode_request({"input": GOOD}, outputs=("probs",)), 400,
                       ("unknown output 'probs'", "logits")),
    "negative dimension": (lambda: _binary_input([-2, 1, 8, 8], "UINT8", b""), 400, ("negative dimension",)),
    "json values out of range": (
        lambda: _json({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "UINT8",
                                   "data": [999] * 64}]}), 400, ("out of range",)),
    "bad deadline header": (lambda: (encode_request({"input": GOOD})[0],
                                     {**encode_request({"input": GOOD})[1], "X-Deadline-Ms": "soon"}), 400,
                            ("X-Deadline-Ms", "soon")),
    "compressed body": (lambda: (encode_request({"input": GOOD})[0],
                                 {**encode_request({"input": GOOD})[1], "Content-Encoding": "gzip"}), 415,
                        ("Content-Encoding", "gzip")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_named_4xx(client: TestClient, case: str) -> None:
    make, status, words = CASES[case]
    body, headers = make()
    reply = client.post(INFER, content=body, headers=headers)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    for word in words:
        assert word in error, f"{word!r} not in {error!r}"


def test_unknown_model_is_404_naming_it(client: TestClient) -> None:
    body, headers = encode_request({"input": GOOD})
    reply = client.post("/v2/models/resnet/infer", content=body, headers=headers)
    assert reply.status_code == 404 and "unknown model 'resnet'" in reply.json()["error"]
    meta = client.get("/v2/models/resnet")
    assert meta.status_code == 404 and "'resnet'" in meta.json()["error"]
    assert client.get("/v2/models/resnet/ready").status_code == 404


def test_unknown_routes_and_methods_answer_json_errors(client: TestClient) -> None:
    route = client.get("/v1/models/teacher:predict")
    assert route.status_code == 404 and route.json() == {"error": "Not Found"}
    method = client.get(INFER)
    assert method.status_code == 405 and "error" in method.json()


@pytest.fixture
def small_client(make_settings: Callable[..., CloudSettings]) -> Iterator[TestClient]:
    from cloud_server.main import create_app

    with TestClient(create_app(make_settings(max_body_bytes=1000, max_queue_size=8))) as test_client:
        yield test_client


def test_oversized_body_is_413_before_reading_it(small_client: TestClient) -> None:
    body, headers = encode_request({"input": np.zeros((20, 1, 8, 8), dtype=np.uint8)})
    reply = small_client.post(INFER, content=body, headers=headers)
    assert reply.status_code == 413 and "exceeds the limit of 1000" in reply.json()["error"]


def test_oversized_chunked_body_is_413(small_client: TestClient) -> None:
    body, headers = encode_request({"input": np.zeros((20, 1, 8, 8), dtype=np.uint8)})

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
        for start in range(0, len(body), 256):
            yield body[start:start + 256]

    reply = small_client.post(INFER, content=chunks(), headers=headers)
    assert reply.status_code == 413 and "exceeds the limit" in reply.json()["error"]


def test_batch_larger_than_the_queue_can_ever_hold_is_413(small_client: TestClient) -> None:
    body, headers = encode_request({"input": np.zeros((9, 1, 8, 8), dtype=np.uint8)})
    reply = small_client.post(INFER, content=body, headers=headers)
    assert reply.status_code == 413 and "max_queue_size 8" in reply.json()["error"]


def test_unexpected_errors_become_a_500_with_a_message(make_fake_app: Callable[..., Any]) -> None:
    """The one path that may answer 500: the backend itself failing. The message names it."""
    app = make_fake_app()
    with TestClient(app) as test_client:
        app.state.runtime.registry.get("teacher").backend.fail_with = RuntimeError("GPU fell off")
        body, headers = encode_request({"input": GOOD})
        reply = test_client.post(INFER, content=body, headers=headers)
    assert reply.status_code == 500
    assert "'teacher' failed on a batch of 2 samples" in reply.json()["error"]
    assert "GPU fell off" in reply.json()["error"]


def test_global_handler_turns_a_crash_into_a_counted_500(make_fake_app: Callable[..., Any]) -> None:
    class BrokenRegistry:
        def get(self, name: str, version: str | None = None) -> None:
            raise ZeroDivisionError("boom")

        def __contains__(self, name: object) -> bool:
            return name == "teacher"

    app = make_fake_app()
    body, headers = encode_request({"input": GOOD})
    # raise_server_exceptions=False: Starlette re-raises after answering, as a real server would log it.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        app.state.runtime.registry = BrokenRegistry()  # after start-up: the lifespan loaded the real one
        reply = test_client.post(INFER, content=body, headers=headers)
        exposition = test_client.get("/metrics").text
    assert reply.status_code == 500
    assert reply.json() == {"error": "internal server error: ZeroDivisionError"}
    assert 'edgecloud_model_requests_total{code="500",model="teacher"} 1.0' in exposition
