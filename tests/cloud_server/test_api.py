"""The OIP endpoints of the real app (onnxruntime on the tiny teacher), in process."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shared.oip import HEADER_LENGTH, decode_response, encode_request

INFER = "/v2/models/teacher/infer"


def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "edgecloud-cloud" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_describes_the_wire_contract(client: TestClient) -> None:
    meta = client.get("/v2/models/teacher").json()
    assert meta["name"] == "teacher" and meta["versions"] == ["1"] and meta["platform"] == "edgecloud_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]},
                               {"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert client.get("/v2/models/teacher/versions/1").json() == meta
    assert client.get("/v2/models/teacher/ready").json() == {"name": "teacher", "ready": True}
    missing = client.get("/v2/models/teacher/versions/2")
    assert missing.status_code == 404 and "no version '2'" in missing.json()["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_onnxruntime(client: TestClient, tiny_test_split: tuple[np.ndarray, np.ndarray],
                                   teacher_reference: Callable[[np.ndarray], np.ndarray],
                                   binary: bool) -> None:
    x, y = tiny_test_split[0][:20], tiny_test_split[1][:20]
    body, headers = encode_request({"input": x}, binary=binary, binary_outputs=binary, request_id="abc")
    reply = client.post(INFER, content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    assert (HEADER_LENGTH.lower() in reply.headers) is binary
    response, outputs = decode_response(reply.content, reply.headers)
    assert response.model_name == "teacher" and response.id == "abc"
    expected = teacher_reference(x)
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs["label"], expected.argmax(axis=1))
    assert (outputs["label"] == y).mean() > 0.8  # a real teacher, not noise


def test_fp32_raw_scale_input_equals_uint8_input(client: TestClient,
                                                 tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:5]
    logits = []
    for array in (x, x.astype(np.float32)):
        body, headers = encode_request({"input": array}, outputs=("logits",))
        reply = client.post(INFER, content=body, headers=headers)
        response, outputs = decode_response(reply.content, reply.headers)
        assert [o.name for o in response.outputs] == ["logits"]
        logits.append(outputs["logits"])
    np.testing.assert_array_equal(logits[0], logits[1])


def test_requested_outputs_and_their_encodings(client: TestClient,
                                               tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:3]
    body, headers = encode_request({"input": x}, outputs=("label",), binary_outputs=False)
    reply = client.post(INFER, content=body, headers=headers)
    assert reply.headers["content-type"] == "application/json"
    payload = reply.json()
    assert [o["name"] for o in payload["outputs"]] == ["label"]
    assert payload["outputs"][0]["datatype"] == "INT64" and len(payload["outputs"][0]["data"]) == 3


def test_versioned_infer_and_empty_batch(client: TestClient) -> None:
    body, headers = encode_request({"input": np.zeros((0, 1, 8, 8), dtype=np.uint8)})
    reply = client.post("/v2/models/teacher/versions/1/infer", content=body, headers=headers)
    assert reply.status_code == 200
    _, outputs = decode_response(reply.content, reply.headers)
    assert outputs["logits"].shape == (0, 10) and outputs["label"].shape == (0,)
