"""Prometheus series after a known workload; every app has its own registry."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.oip import encode_request
from tests.cloud_server.helpers import metric

INFER = "/v2/models/teacher/infer"


def test_counters_and_histograms_after_a_known_workload(make_settings: Callable[..., CloudSettings]) -> None:
    ok_body, ok_headers = encode_request({"input": np.zeros((3, 1, 8, 8), dtype=np.uint8)})
    with TestClient(create_app(make_settings())) as client:
        for _ in range(4):  # sequential, so four batches of three samples
            assert client.post(INFER, content=ok_body, headers=ok_headers).status_code == 200
        assert client.post(INFER, content=b"{", headers={}).status_code == 400
        assert client.post("/v2/models/other/infer", content=ok_body, headers=ok_headers).status_code == 404
        client.get("/v2/health/ready")  # not an infer request: not counted
        text = client.get("/metrics").text
    assert metric(text, "edgecloud_model_requests_total", {"code": "200"}) == 4
    assert metric(text, "edgecloud_model_requests_total", {"code": "400"}) == 1
    assert metric(text, "edgecloud_model_requests_total", {"code": "404"}) == 1
    assert metric(text, "edgecloud_model_batch_size_count") == 4  # warm-up bypasses the batcher
    assert metric(text, "edgecloud_model_batch_size_sum") == 12
    assert metric(text, "edgecloud_model_compute_seconds_count") == 4
    assert metric(text, "edgecloud_model_queue_wait_seconds_count") == 4
    assert metric(text, "edgecloud_model_queue_depth") == 0


def test_two_apps_do_not_share_series(make_settings: Callable[..., CloudSettings]) -> None:
    body, headers = encode_request({"input": np.zeros((1, 1, 8, 8), dtype=np.uint8)})
    with TestClient(create_app(make_settings())) as first, TestClient(create_app(make_settings())) as second:
        first.post(INFER, content=body, headers=headers)
        assert metric(first.get("/metrics").text, "edgecloud_model_requests_total", {"code": "200"}) == 1
        assert metric(second.get("/metrics").text, "edgecloud_model_requests_total", {"code": "200"}) == 0
