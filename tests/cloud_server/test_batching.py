"""Dynamic batching in the app: merging, the bounded queue (503 at once), deadlines (504, not computed).

A FakeBackend whose `gate` holds compute back makes each scenario deterministic: while one batch
"computes", the next requests are provably queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from shared.bundle import load_manifest
from shared.oip import DEADLINE_HEADER, decode_response, encode_request
from tests.cloud_server.helpers import FakeBackend, metric

INFER = "/v2/models/teacher/infer"


def _sample(value: int, n: int = 1) -> np.ndarray:
    return np.full((n, 1, 8, 8), value, dtype=np.uint8)


def _post(client: TestClient, x: np.ndarray, headers: dict[str, str] | None = None) -> httpx.Response:
    body, base = encode_request({"input": x})
    return client.post(INFER, content=body, headers={**base, **(headers or {})})


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_concurrent_requests_merge_into_one_batch_and_split_back(
        make_fake_app: Callable[..., Any], fake_backend: FakeBackend) -> None:
    app = make_fake_app(max_batch_size=64, max_queue_delay_ms=5.0)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=16) as pool:
        batcher = app.state.runtime.registry.get("teacher").batcher
        fake_backend.reset()
        fake_backend.gate.clear()
        first = pool.submit(_post, client, _sample(0))
        assert fake_backend.entered.wait(10)  # request 0 is computing and blocked
        rest: list[Future[httpx.Response]] = [pool.submit(_post, client, _sample(i, n=1 + i % 2))
                                              for i in range(1, 16)]
        _wait_for(lambda: batcher.depth == sum(1 + i % 2 for i in range(1, 16)), "15 requests to queue")
        fake_backend.gate.set()
        replies = [first.result(10), *(f.result(10) for f in rest)]
        exposition = client.get("/metrics").text
    assert [r.status_code for r in replies] == [200] * 16
    assert fake_backend.batch_sizes == [1, 23]  # the 15 queued requests (23 samples) ran as ONE batch
    spec = load_manifest(app.state.runtime.repository.source).input
    for i, reply in enumerate(replies):  # each request got its own rows back, in order
        _, outputs = decode_response(reply.content, reply.headers)
        expected_logit = (i - spec.mean[0]) / spec.std[0]  # FakeBackend: logits = normalised pixels
        assert outputs["logits"].shape == (1 + (i % 2 if i else 0), 10)
        np.testing.assert_allclose(outputs["logits"], expected_logit, rtol=1e-5)
    assert metric(exposition, "edgecloud_model_batch_size_count") == 2
    assert metric(exposition, "edgecloud_model_batch_size_sum") == 24
    assert metric(exposition, "edgecloud_model_batch_size_bucket", {"le": "1.0"}) == 1  # one batch > 1


def test_real_teacher_merges_16_concurrent_requests(make_settings: Callable[..., Any]) -> None:
    from cloud_server.main import create_app

    app = create_app(make_settings(max_queue_delay_ms=100.0))
    x = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda _: _post(client, x), range(16)))
        exposition = client.get("/metrics").text
    assert all(r.status_code == 200 for r in replies)
    batches = metric(exposition, "edgecloud_model_batch_size_count")
    assert metric(exposition, "edgecloud_model_batch_size_sum") == 16
    assert batches < 16  # at least one forward pass served more than one request
    assert metric(exposition, "edgecloud_model_batch_size_bucket", {"le": "1.0"}) < batches


def test_full_queue_answers_503_at_once_with_retry_after(
        make_fake_app: Callable[..., Any], fake_backend: FakeBackend) -> None:
    app = make_fake_app(max_queue_size=2, max_batch_size=1, request_timeout_s=15.0)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=4) as pool:
        batcher = app.state.runtime.registry.get("teacher").batcher
        fake_backend.reset()
        fake_backend.gate.clear()
        computing = pool.submit(_post, client, _sample(1))
        assert fake_backend.entered.wait(10)
        queued = [pool.submit(_post, client, _sample(2)), pool.submit(_post, client, _sample(3))]
        _wait_for(lambda: batcher.depth == 2, "the queue to fill")
        started = time.monotonic()
        refused = _post(client, _sample(4))
        elapsed = time.monotonic() - started
        assert not fake_backend.gate.is_set()  # answered while compute was still blocked: no waiting
        fake_backend.gate.set()
        assert [f.result(10).status_code for f in [computing, *queued]] == [200, 200, 200]
        exposition = client.get("/metrics").text
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "queue full: 2 of 2 samples waiting" in refused.json()["error"]
    assert elapsed < 2.0
    assert metric(exposition, "edgecloud_model_requests_total", {"code": "503"}) == 1
    assert metric(exposition, "edgecloud_model_requests_total", {"code": "200"}) == 3


def test_expired_deadline_is_dropped_not_computed(make_fake_app: Callable[..., Any],
                                                  fake_backend: FakeBackend) -> None:
    app = make_fake_app(max_batch_size=8)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=2) as pool:
        batcher = app.state.runtime.registry.get("teacher").batcher
        fake_backend.reset()
        fake_backend.gate.clear()
        computing = pool.submit(_post, client, _sample(1))
        assert fake_backend.entered.wait(10)
        late = _post(client, _sample(77), {DEADLINE_HEADER: "100"})  # waits behind the blocked batch
        assert not fake_backend.gate.is_set()  # the 504 came while compute was still blocked
        assert batcher.depth == 0  # and its slot in the queue was freed at once
        already_late = _post(client, _sample(78), {DEADLINE_HEADER: "0"})
        fake_backend.gate.set()
        assert computing.result(10).status_code == 200
        after = _post(client, _sample(5))
    assert late.status_code == 504 and "deadline of 100 ms passed" in late.json()["error"]
    assert already_late.status_code == 504
    assert "deadline passed before arrival" in already_late.json()["error"]
    assert after.status_code == 200
    assert fake_backend.batch_sizes == [1, 1]  # only the two on-time requests were computed
    assert not any((b == 77).any() or (b == 78).any() for b in fake_backend.batches)


def test_shutdown_fails_queued_work_with_503_and_turns_unready(
        make_fake_app: Callable[..., Any], fake_backend: FakeBackend) -> None:
    app = make_fake_app(max_batch_size=1)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=2) as pool:
        batcher = app.state.runtime.registry.get("teacher").batcher
        fake_backend.reset()
        fake_backend.gate.clear()
        computing = pool.submit(_post, client, _sample(1))
        assert fake_backend.entered.wait(10)
        queued = pool.submit(_post, client, _sample(2))
        _wait_for(lambda: batcher.depth == 1, "a request to queue")
        client.portal.call(app.state.runtime.registry.close)  # what the lifespan does on shutdown
        fake_backend.gate.set()
        replies = [computing.result(10), queued.result(10)]
        after = _post(client, _sample(3))
        ready = client.get("/v2/health/ready")
    for reply in replies:
        assert reply.status_code == 503 and "shutting down" in reply.json()["error"]
    assert after.status_code == 503 and "not ready" in after.json()["error"]
    assert ready.status_code == 503 and ready.json() == {"ready": False}
    assert fake_backend.batch_sizes == [1]  # the queued request was never computed
