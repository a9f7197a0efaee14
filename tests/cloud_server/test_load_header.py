"""Every infer answer carries the model's load (X-Edgecloud-Load), which orchestrating clients learn from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.oip import LOAD_HEADER, encode_request, format_load, parse_load
from tests.cloud_server.helpers import metric
from tests.security.helpers import serving


def test_infer_answers_carry_the_load(make_settings: Callable[..., CloudSettings]) -> None:
    body, headers = encode_request({"input": np.zeros((2, 1, 8, 8), dtype=np.uint8)})
    with TestClient(create_app(make_settings())) as client:
        first = client.post("/v2/models/teacher/infer", content=body, headers=headers)
        second = client.post("/v2/models/teacher/infer", content=body, headers=headers)
        text = client.get("/metrics").text
    assert first.status_code == second.status_code == 200
    depth, service_ms, server_ms = parse_load(second.headers)
    assert depth == 0  # nothing else was waiting
    assert service_ms > 0.0  # the first pass set the moving average
    assert server_ms >= service_ms * 2 * 0.5  # two samples computed inside this request's time, roughly
    # /metrics reports the same moving average (in seconds)
    gauge = metric(text, "edgecloud_model_service_seconds_per_sample", {"model": "teacher"})
    assert gauge * 1000.0 == pytest.approx(service_ms, abs=1e-3)  # the header rounds to 1 µs


def test_load_header_round_trips_and_junk_reads_as_absent() -> None:
    value = format_load(depth=3, service_ms=1.25, server_ms=7.5)
    assert parse_load({LOAD_HEADER: value}) == (3, 1.25, 7.5)
    assert parse_load({LOAD_HEADER.lower(): value}) == (3, 1.25, 7.5)
    for junk in ("", "depth=x;service_ms=1;server_ms=1", "depth=1", "depth=-1;service_ms=1;server_ms=1",
                 "depth=1;service_ms=nan;server_ms=1"):
        assert parse_load({LOAD_HEADER: junk}) is None
    assert parse_load({}) is None


@pytest.mark.slow
def test_a_running_server_sends_the_load_from_its_fast_path(tiny_bundle: Path, tmp_path: Path) -> None:
    # A real `edgecloud cloud serve` process: infer requests are answered by serving/fastpath.py ahead of
    # the FastAPI app (its middlewares and routes never see them), so the header must come from there.
    body, headers = encode_request({"input": np.zeros((1, 1, 8, 8), dtype=np.uint8)})
    args = ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1"]
    json_type = {"content-type": "application/json"}
    with serving("cloud", args, log_dir=tmp_path) as service, httpx.Client(base_url=service.url, timeout=30) as client:
        answers = [client.post("/v2/models/teacher/infer", content=body, headers=headers) for _ in range(3)]
        refused = client.post("/v2/models/teacher/infer", content=b"{", headers=json_type)
        text = client.get("/metrics").text
    assert [a.status_code for a in answers] == [200, 200, 200]
    loads = [parse_load(a.headers) for a in answers]
    assert all(load is not None for load in loads), [a.headers for a in answers]
    depth, service_ms, server_ms = loads[-1]
    assert depth == 0 and service_ms > 0.0 and server_ms > 0.0
    gauge = metric(text, "edgecloud_model_service_seconds_per_sample", {"model": "teacher"})
    assert gauge * 1000.0 == pytest.approx(service_ms, abs=1e-3)  # the header rounds to 1 µs
    assert refused.status_code == 400 and LOAD_HEADER.lower() not in refused.headers  # only answers carry a load
