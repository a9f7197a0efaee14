"""The edge's OIP endpoint: health, metadata, JSON and binary inference, errors as 4xx with a message."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge_agent.app import create_app
from edge_agent.settings import EdgeSettings
from shared.oip import decode_response, encode_request
from tests.edge_agent.helpers import StubBehaviour, metric, stub_labels

Make = Callable[..., EdgeSettings]
INFER = "/v2/models/edge/infer"


@pytest.fixture
def client(make_settings: Make, stub: tuple[str, StubBehaviour]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(cloud_url=stub[0], max_body_bytes=1 << 16))) as test_client:
        yield test_client


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]
    meta = client.get("/v2/models/edge").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, 1, 8, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "source", "fallback_reason"]
    assert client.get("/v2/models/edge/ready").json() == {"name": "edge", "ready": True}
    assert client.get("/v2/models/edge/versions/1").status_code == 200


def test_not_ready_until_the_lifespan_ran(make_settings: Make) -> None:
    client = TestClient(create_app(make_settings()))  # no `with`: the lifespan has not started
    assert client.get("/v2/health/ready").status_code == 503
    response = client.post(INFER, content=encode_request({"input": np.zeros((1, 1, 8, 8), np.uint8)})[0])
    assert response.status_code == 503 and "not ready" in response.json()["error"]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_binary_and_json(client: TestClient, binary: bool,
                               tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:64]
    body, headers = encode_request({"input": x}, binary=binary, binary_outputs=binary, request_id="r-1")
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    parsed, outputs = decode_response(response.content, response.headers)
    assert parsed.model_name == "edge" and parsed.id == "r-1"
    sources = np.array([s.decode() for s in outputs["source"]])
    assert outputs["label"].dtype == np.int64 and outputs["label"].shape == (64,)
    assert {"edge", "cloud"} == set(sources)  # the tiny bundle offloads some of 64 digits
    cloud = sources == "cloud"
    np.testing.assert_array_equal(outputs["label"][cloud], stub_labels(x[cloud]))
    assert set(outputs["fallback_reason"].tolist()) == {b""}
    text = client.get("/metrics").text
    assert metric(text, "edgecloud_edge_requests_total", {"source": "cloud"}) == cloud.sum()


def test_requested_outputs_and_strategy_parameter(client: TestClient) -> None:
    x = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    header = {"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "UINT8", "data": x.ravel().tolist()}],
              "outputs": [{"name": "source"}], "parameters": {"strategy": "edge_only"}}
    response = client.post(INFER, json=header)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [{"name": "source", "shape": [3], "datatype": "BYTES",
                                           "data": ["edge"] * 3}]


def test_fallbacks_are_reported_on_the_wire(client: TestClient, stub: tuple[str, StubBehaviour]) -> None:
    stub[1].mode = "garbage"
    header = {"inputs": [{"name": "input", "shape": [4, 1, 8, 8], "datatype": "UINT8", "data": [0] * 256}],
              "parameters": {"strategy": "cloud_only"}}
    response = client.post(INFER, json=header)
    assert response.status_code == 200
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["source"] == ["edge-fallback"] * 4 and outputs["fallback_reason"] == ["bad_response"] * 4


@pytest.mark.parametrize(("path", "payload", "status", "message"), [
    (INFER, b"not json", 400, "not valid JSON"),
    (INFER, json.dumps({"inputs": []}).encode(), 422, "inputs"),
    (INFER, json.dumps({"inputs": [{"name": "pixels", "shape": [1, 1, 8, 8], "datatype": "UINT8",
                                    "data": [0] * 64}]}).encode(), 400, "its only input is 'input'"),
    (INFER, json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 7], "datatype": "UINT8",
                                    "data": [0] * 56}]}).encode(), 400,
     r"expected shape \[-1, 1, 8, 8\], got \[1, 1, 8, 7\]"),
    (INFER, json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "INT32",
                                    "data": [0] * 64}]}).encode(), 400, "datatype INT32 is not accepted"),
    (INFER, json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "UINT8",
                                    "data": [0] * 64}], "parameters": {"strategy": "maybe"}}).encode(),
     400, "unknown strategy 'maybe'; choose one of cooperation, edge_only, cloud_only"),
    (INFER, json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "UINT8",
                                    "data": [0] * 64}], "outputs": [{"name": "probs"}]}).encode(),
     400, "unknown output 'probs'"),
    ("/v2/models/teacher/infer", b"{}", 404, "unknown model 'teacher'"),
    ("/v2/models/edge/versions/7/infer", b"{}", 404, "no version '7'"),
    (INFER, b"x" * (1 << 17), 413, "exceeds the limit"),
])
def test_bad_requests_get_4xx_naming_the_problem(client: TestClient, path: str, payload: bytes, status: int,
                                                 message: str) -> None:
    response = client.post(path, content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert re.search(message, response.json()["error"])


def test_cloud_only_without_a_cloud_is_422(make_settings: Make) -> None:
    header = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "UINT8", "data": [0] * 64}],
              "parameters": {"strategy": "cloud_only"}}
    with TestClient(create_app(make_settings())) as client:
        response = client.post(INFER, json=header)
    assert response.status_code == 422 and "needs a cloud" in response.json()["error"]


def test_an_unexpected_error_is_a_500_with_a_message_not_a_traceback(make_settings: Make) -> None:
    async def broken_infer(*args: object, **kwargs: object) -> None:
        raise RuntimeError("agent exploded")

    header = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "UINT8", "data": [0] * 64}]}
    app = create_app(make_settings())
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.runtime.registry.get("edge").agent.infer = broken_infer  # after start-up loaded the real one
        response = client.post(INFER, json=header)
    assert response.status_code == 500 and response.json() == {"error": "internal server error: RuntimeError"}
