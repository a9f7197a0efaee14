"""CloudClient against real servers: `edgecloud cloud serve`, and a stub that misbehaves on demand."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from edge_agent.breaker import BreakerPolicy
from edge_agent.cloud_client import ClientPolicy, CloudClient, FallbackReason, OffloadError, wire_pixels
from edge_agent.settings import EdgeSettings
from shared.bundle import load_manifest
from shared.datasets import normalize
from shared.oip import LOAD_HEADER, encode_response, format_load
from testbed.services import Service
from tests.edge_agent.helpers import StubBehaviour, closed_port_url, stalled_server, stub_labels

pytestmark = pytest.mark.anyio
Make = Callable[..., EdgeSettings]


def teacher_labels(bundle: Path, x: np.ndarray) -> np.ndarray:
    manifest = load_manifest(bundle)
    session = ort.InferenceSession(str(bundle / "teacher.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": normalize(x, manifest.input.mean, manifest.input.std)})[0].argmax(1)


async def test_real_cloud_answers_with_the_teachers_labels(make_settings: Make, real_cloud: Service,
                                                           tiny_bundle: Path,
                                                           tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:40]
    for binary in (True, False):
        async with CloudClient(make_settings(cloud_url=real_cloud.url, cloud_binary=binary),
                               num_classes=10) as cloud:
            answer = await cloud.infer(x)
        np.testing.assert_array_equal(answer.labels, teacher_labels(tiny_bundle, x))
        assert answer.tries == 1 and answer.rtt_s > 0
    # Binary UINT8: a sample costs its 64 pixel bytes plus a small, per-request JSON header.
    assert answer.bytes_sent > 0


async def test_binary_request_costs_pixel_bytes_plus_a_small_header(make_settings: Make,
                                                                    stub: tuple[str, StubBehaviour]) -> None:
    url, _ = stub
    x = np.zeros((50, 1, 8, 8), dtype=np.uint8)
    async with CloudClient(make_settings(cloud_url=url), num_classes=10) as cloud:
        answer = await cloud.infer(x)
    assert x.nbytes < answer.bytes_sent < x.nbytes + 300


async def test_label_or_logits_json_are_both_accepted(make_settings: Make, stub: tuple[str, StubBehaviour],
                                                      tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    x = tiny_test_split[0][:16]
    async with CloudClient(make_settings(cloud_url=url), num_classes=10) as cloud:
        np.testing.assert_array_equal((await cloud.infer(x)).labels, stub_labels(x))
        behaviour.mode = "logits_json"
        np.testing.assert_array_equal((await cloud.infer(x)).labels, stub_labels(x))
    assert not np.isnan(behaviour.deadlines_ms).any() and max(behaviour.deadlines_ms) <= 1500


async def test_bearer_token_is_sent(make_settings: Make, stub: tuple[str, StubBehaviour], tmp_path: Path) -> None:
    url, behaviour = stub
    token_file = tmp_path / "token"
    token_file.write_text("t0ken\n")
    async with CloudClient(make_settings(cloud_url=url, token_file=token_file), num_classes=10) as cloud:
        await cloud.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8))
    assert behaviour.authorization == ["Bearer t0ken"]


async def test_closed_port_is_unreachable_after_bounded_retries(make_settings: Make) -> None:
    async with CloudClient(make_settings(cloud_url=closed_port_url(), retries=2), num_classes=10) as cloud:
        with pytest.raises(OffloadError) as info:
            await cloud.infer(np.zeros((3, 1, 8, 8), dtype=np.uint8))
    assert info.value.reason is FallbackReason.UNREACHABLE and info.value.tried
    assert "after 3 tries" in str(info.value)


async def test_stalled_cloud_times_out_within_the_read_timeout(make_settings: Make) -> None:
    with stalled_server() as (url, accepted):
        settings = make_settings(cloud_url=url, read_timeout_s=0.3, deadline_ms=2000, retries=3)
        async with CloudClient(settings, num_classes=10) as cloud:
            started = time.monotonic()
            with pytest.raises(OffloadError) as info:
                await cloud.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8))
            elapsed = time.monotonic() - started
    assert info.value.reason is FallbackReason.TIMEOUT
    assert 0.25 < elapsed < 1.5  # about one 0.3 s read timeout (slack for a loaded CI machine)
    assert len(accepted) == 1  # a read timeout is never retried


async def test_stalled_cloud_never_outlives_the_deadline(make_settings: Make) -> None:
    with stalled_server() as (url, _):
        settings = make_settings(cloud_url=url, read_timeout_s=5.0, deadline_ms=300)
        async with CloudClient(settings, num_classes=10) as cloud:
            started = time.monotonic()
            with pytest.raises(OffloadError, match="timeout"):
                await cloud.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8))
            assert time.monotonic() - started < 1.2  # the 0.3 s deadline, not the 5 s read timeout


async def test_503_is_overloaded_after_bounded_retries(make_settings: Make, stub: tuple[str, StubBehaviour]) -> None:
    url, behaviour = stub
    behaviour.mode = "503"
    async with CloudClient(make_settings(cloud_url=url, retries=2), num_classes=10) as cloud:
        with pytest.raises(OffloadError) as info:
            await cloud.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8))
    assert info.value.reason is FallbackReason.OVERLOADED
    assert behaviour.requests == 3  # the first try and two retries, no more


@pytest.mark.parametrize(("mode", "reason"), [
    ("429", FallbackReason.OVERLOADED), ("401", FallbackReason.UNAUTHORIZED), ("500", FallbackReason.BAD_RESPONSE),
    ("garbage", FallbackReason.BAD_RESPONSE), ("bad_gzip", FallbackReason.BAD_RESPONSE),
    ("wrong_shape", FallbackReason.BAD_RESPONSE),
    ("out_of_range", FallbackReason.BAD_RESPONSE),
])
async def test_failures_map_to_reasons_without_retrying(make_settings: Make, stub: tuple[str, StubBehaviour],
                                                        mode: str, reason: FallbackReason) -> None:
    url, behaviour = stub
    behaviour.mode = mode
    async with CloudClient(make_settings(cloud_url=url), num_classes=10) as cloud:
        with pytest.raises(OffloadError) as info:
            await cloud.infer(np.full((4, 1, 8, 8), 3, dtype=np.uint8))
    assert info.value.reason is reason
    assert behaviour.requests == 1


async def test_breaker_opens_stops_calling_and_half_opens(make_settings: Make,
                                                          stub: tuple[str, StubBehaviour]) -> None:
    url, behaviour = stub
    behaviour.mode = "500"
    x = np.zeros((2, 1, 8, 8), dtype=np.uint8)
    settings = make_settings(cloud_url=url, breaker_failures=3, breaker_reset_s=0.3)
    async with CloudClient(settings, num_classes=10) as cloud:
        for _ in range(3):
            with pytest.raises(OffloadError, match="bad_response"):
                await cloud.infer(x)
        assert behaviour.requests == 3
        for _ in range(5):
            with pytest.raises(OffloadError) as info:
                await cloud.infer(x)
            assert info.value.reason is FallbackReason.CIRCUIT_OPEN and not info.value.tried
        assert behaviour.requests == 3  # an open circuit makes no network call
        behaviour.mode = "ok"
        time.sleep(0.35)
        answer = await cloud.infer(x)  # the half-open probe goes through and closes the circuit
        np.testing.assert_array_equal(answer.labels, stub_labels(x))
        await cloud.infer(x)
    assert behaviour.requests == 5


def test_float_pixels_travel_as_uint8_when_they_are_whole() -> None:
    x = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)
    assert wire_pixels(x).dtype == np.uint8
    assert wire_pixels(x + 0.5).dtype == np.float32
    assert wire_pixels(x * 10).dtype == np.float32  # beyond 255


async def test_real_cloud_with_a_token(make_settings: Make, tiny_bundle: Path, tmp_path: Path) -> None:
    from testbed.services import free_port, start_service, stop_service, wait_ready

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("right-token\n")
    bad.write_text("wrong-token\n")
    cloud = start_service("cloud-auth", ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1",
                                         "--token-file", str(good)], port=free_port(), log_dir=tmp_path)
    try:
        wait_ready(cloud, timeout_s=60)
        x = np.zeros((2, 1, 8, 8), dtype=np.uint8)
        async with CloudClient(make_settings(cloud_url=cloud.url, token_file=good), num_classes=10) as client:
            assert (await client.infer(x)).labels.shape == (2,)
        for token_file in (bad, None):
            async with CloudClient(make_settings(cloud_url=cloud.url, token_file=token_file),
                                   num_classes=10) as client:
                with pytest.raises(OffloadError) as info:
                    await client.infer(x)
            assert info.value.reason is FallbackReason.UNAUTHORIZED
    finally:
        stop_service(cloud)


async def test_the_edges_policy_is_its_settings(make_settings: Make) -> None:
    settings = make_settings(cloud_url="http://cloud:8001", connect_timeout_s=0.7, read_timeout_s=1.5,
                             deadline_ms=900.0, retries=4, backoff_s=0.2, breaker_failures=7, breaker_reset_s=2.5,
                             max_inflight=3, cloud_binary=False)
    assert ClientPolicy.from_settings(settings) == ClientPolicy(
        deadline_ms=900.0, connect_timeout_s=0.7, read_timeout_s=1.5, retries=4, backoff_s=0.2,
        breaker=BreakerPolicy(failures=7, reset_s=2.5), max_inflight=3, binary=False)
    async with CloudClient(settings, num_classes=10) as client:
        assert client.policy == ClientPolicy.from_settings(settings) and client.base_url == "http://cloud:8001"
        assert client.breaker is not None and client.breaker.failures_to_open == 7 and client.breaker.reset_s == 2.5
    for bad, needle in (({"retries": -1}, "retries"), ({"deadline_ms": 0.0}, "deadline_ms"),
                        ({"max_inflight": 0}, "max_inflight")):
        with pytest.raises(ValueError, match=needle):
            ClientPolicy(**{**vars(ClientPolicy.from_settings(settings)), **bad})


def _status_server(status: int, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"error": "no"})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(("status", "reason", "tries"), [
    (503, FallbackReason.OVERLOADED, 3), (429, FallbackReason.OVERLOADED, 1), (401, FallbackReason.UNAUTHORIZED, 1),
    (403, FallbackReason.UNAUTHORIZED, 1), (408, FallbackReason.TIMEOUT, 1), (504, FallbackReason.TIMEOUT, 1),
    (500, FallbackReason.BAD_RESPONSE, 1), (404, FallbackReason.BAD_RESPONSE, 1)])
async def test_each_status_is_a_reason_and_only_503_is_retried(make_settings: Make, status: int,
                                                               reason: FallbackReason, tries: int) -> None:
    seen: list[httpx.Request] = []
    async with CloudClient(make_settings(cloud_url="http://cloud", retries=2), num_classes=10,
                           transport=_status_server(status, seen)) as cloud:
        with pytest.raises(OffloadError) as info:
            await cloud.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8))
    assert info.value.reason is reason and info.value.tried
    assert len(seen) == tries


async def test_the_answer_carries_the_servers_load_report(make_settings: Make) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body, headers = encode_response("teacher", {"label": np.array([3, 4], np.int64)}, binary=set())
        if request.url.path.endswith("/reporting/infer"):
            headers[LOAD_HEADER] = format_load(depth=4, service_ms=2.0, server_ms=9.0)
        return httpx.Response(200, content=body, headers=headers)

    x = {"input": np.zeros((2, 1, 8, 8), np.uint8)}
    async with CloudClient(make_settings(cloud_url="http://cloud"), num_classes=10,
                           transport=httpx.MockTransport(handle)) as cloud:
        reported = await cloud.infer_model("reporting", x, n=2)
        silent = await cloud.infer_model("silent", x, n=2)
    assert reported.labels.tolist() == [3, 4] and reported.load == (4, 2.0, 9.0)
    assert silent.load is None


async def test_keep_warm_asks_for_readiness_only_when_idle_and_never_trips_the_breaker(make_settings: Make) -> None:
    import asyncio

    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/ready"):
            return httpx.Response(503)  # a server that is not ready: not an offload failure
        body, headers = encode_response("teacher", {"label": np.array([1], np.int64)}, binary=set())
        return httpx.Response(200, content=body, headers=headers)

    async with CloudClient(make_settings(cloud_url="http://cloud"), num_classes=10,
                           transport=httpx.MockTransport(handle)) as cloud:
        warm = asyncio.create_task(cloud.keep_warm(idle_s=0.05))
        await asyncio.sleep(0.18)
        pings = seen.count("/v2/health/ready")
        assert 2 <= pings <= 4
        # Offloads keep the connection busy: no readiness requests while they go out more often than idle_s.
        for _ in range(6):
            await cloud.infer_model("teacher", {"input": np.zeros((1, 1, 8, 8), np.uint8)}, n=1)
            await asyncio.sleep(0.02)
        assert seen.count("/v2/health/ready") == pings
        warm.cancel()
        assert cloud.breaker is None or cloud.breaker.state.value == "closed"
