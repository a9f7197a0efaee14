"""The live orchestrator: decisions through real OIP answers, load headers learnt, failures answered locally."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from edge_agent.app import create_app
from edge_agent.cloud_client import CloudClient, OffloadError
from edge_agent.settings import EdgeSettings
from orchestration.agent import LocalVariants, Orchestrator, OrchestratorModel, build_orchestrator, offload_policy
from orchestration.learners import FAILURE_PENALTY
from orchestration.metrics import OrchestratorMetrics
from orchestration.policies import make_policy
from orchestration.profiles import profiles_from_manifest
from shared.bundle import load_manifest
from shared.names import AnswerSource, FallbackReason, Tier
from shared.oip import (
    DEADLINE_HEADER,
    LOAD_HEADER,
    ProtocolError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    format_load,
)
from tests.cloud_server.helpers import metric


def fake_server(label: int, *, depth: int = 4, service_ms: float = 2.0) -> httpx.MockTransport:
    """An OIP server answering every sample with `label` and reporting a load."""

    def handle(request: httpx.Request) -> httpx.Response:
        _, tensors = decode_request(request.content, request.headers, max_bytes=1 << 20)
        n = len(tensors["input"])
        body, headers = encode_response("m", {"label": np.full(n, label, np.int64)}, binary=set())
        headers[LOAD_HEADER] = format_load(depth=depth, service_ms=service_ms, server_ms=9.0)
        return httpx.Response(200, content=body, headers=headers)

    return httpx.MockTransport(handle)


def refusing() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.MockTransport(handle)


def tier_client(bundle: Path, transport: httpx.AsyncBaseTransport, *, timeout_ms: float = 1000.0,
                clock: Callable[[], float] = time.monotonic) -> CloudClient:
    """The orchestrator's client to a server at http://edge, as build_orchestrator makes it."""
    return CloudClient(EdgeSettings(bundle=bundle), base_url="http://edge", policy=offload_policy(timeout_ms),
                       num_classes=len(load_manifest(bundle).classes), transport=transport, clock=clock)


def orchestrator(bundle: Path, policy: str, clients: dict, registry: CollectorRegistry | None = None) -> Orchestrator:
    profiles = profiles_from_manifest(bundle)
    metrics = OrchestratorMetrics(registry) if registry is not None else None
    return Orchestrator(profiles=profiles, policy=make_policy(policy, profiles), clients=clients,
                        local=LocalVariants(bundle, profiles.names), accuracy_req=0.0, metrics=metrics)


def test_an_edge_server_answer_teaches_the_device_its_load(variant_bundle: Path,
                                                           tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:1]

    async def go() -> None:
        orch = orchestrator(variant_bundle, "static:edge:variant-b",
                            {Tier.EDGE: tier_client(variant_bundle, fake_server(7))})
        answer = await orch.answer(x)
        await orch.aclose()
        assert answer.source is AnswerSource.EDGE_SERVER and answer.tier is Tier.EDGE
        assert answer.labels.tolist() == [7]
        assert orch.obs.load[Tier.EDGE].expected_wait_ms == pytest.approx(8.0)
        # the wire estimate is the round trip less the 9 ms the server said it held the request (>= 0)
        assert 0.0 <= orch.obs.net_ms[Tier.EDGE] <= answer.response_ms

    asyncio.run(go())


def test_a_failed_server_is_answered_by_the_device_and_counted(variant_bundle: Path,
                                                              tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = tiny_test_split
    registry = CollectorRegistry()

    async def go() -> list:
        orch = orchestrator(variant_bundle, "all-edge",
                            {Tier.EDGE: tier_client(variant_bundle, refusing())}, registry)
        answers = [await orch.answer(x[i:i + 1]) for i in range(20)]
        await orch.aclose()
        return answers

    answers = asyncio.run(go())
    assert all(a.source is AnswerSource.FALLBACK and a.reason == FallbackReason.UNREACHABLE for a in answers)
    labels = np.array([a.labels[0] for a in answers])
    assert (labels == y[:20]).mean() > 0.5  # real answers from the device's own variant
    text = __import__("prometheus_client").generate_latest(registry).decode()
    assert metric(text, "edgecloud_orchestrator_fallbacks_total", {"reason": "unreachable"}) == 20
    assert metric(text, "edgecloud_orchestrator_choices_total", {"tier": "edge"}) == 20


def test_the_learner_moves_away_from_a_failing_edge_server(variant_bundle: Path,
                                                          tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:1]

    def slow_refusal(request: httpx.Request) -> httpx.Response:
        time.sleep(0.02)  # a failure costs time before the device answers
        raise httpx.ConnectError("refused", request=request)

    async def go() -> list:
        orch = orchestrator(variant_bundle, "qlearning",
                            {Tier.EDGE: tier_client(variant_bundle, httpx.MockTransport(slow_refusal))})
        answers = [await orch.answer(x) for _ in range(200)]
        await orch.aclose()
        return answers

    answers = asyncio.run(go())
    assert sum(a.tier is Tier.EDGE for a in answers[-80:]) < 20


def test_the_edge_agent_hosts_the_orchestrator_and_loses_no_request_when_the_edge_server_is_gone(
        variant_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = tiny_test_split
    settings = EdgeSettings(bundle=variant_bundle, edge_server_url="http://127.0.0.1:9",  # nothing listens
                            policy="all-edge", orchestrator_timeout_ms=500)
    with TestClient(create_app(settings)) as client:
        models = {m["name"] for m in client.post("/v2/repository/index").json()}
        assert {"edge", "orchestrator"} <= models
        for i in range(5):
            body, headers = encode_request({"input": x[i:i + 1]})
            response = client.post("/v2/models/orchestrator/infer", content=body, headers=headers)
            assert response.status_code == 200
            _, outputs = decode_response(response.content, response.headers)
            assert [str(v, "utf-8") if isinstance(v, bytes) else v for v in outputs["source"]] == ["edge-fallback"]
        body, headers = encode_request({"input": np.zeros((1, 1, 5, 5), np.uint8)})
        bad = client.post("/v2/models/orchestrator/infer", content=body, headers=headers)
        assert bad.status_code in (400, 422)
        assert "expected shape [-1, 1, 8, 8]" in bad.json()["error"]
        text = client.get("/metrics").text
    assert metric(text, "edgecloud_orchestrator_fallbacks_total", {"reason": "unreachable"}) == 5


def test_a_slower_device_holds_its_compute_thread_longer(variant_bundle: Path,
                                                        tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:1]
    fast, slow = LocalVariants(variant_bundle, ["teacher"]), LocalVariants(variant_bundle, ["teacher"], slowdown=50.0)

    def timed(local: LocalVariants) -> float:
        local.run("teacher", x)
        started = time.perf_counter()
        for _ in range(20):
            local.run("teacher", x)
        return (time.perf_counter() - started) / 20

    assert timed(slow) > 10 * timed(fast)
    with pytest.raises(ValueError, match="slowdown"):
        LocalVariants(variant_bundle, ["teacher"], slowdown=0.5)


def test_an_emulated_slow_device_prices_its_own_passes_at_its_speed(variant_bundle: Path) -> None:
    profile = profiles_from_manifest(variant_bundle)
    share = profile.tiers[Tier.END].cpu_share
    for slowdown in (1.0, 100.0):
        model = build_orchestrator(EdgeSettings(bundle=variant_bundle, edge_server_url="http://127.0.0.1:9",
                                                policy="greedy", device_slowdown=slowdown))
        seen = model.orchestrator.profiles
        for name, variant in profile.variants.items():
            # slowdown 1 keeps the profile's device; 100 is a device 1/100 of this host, as --end-cpu-share 0.01
            factor = 1.0 if slowdown == 1.0 else share * slowdown
            assert seen.variants[name].compute_ms(Tier.END) == pytest.approx(variant.compute_ms(Tier.END) * factor)
            assert seen.variants[name].compute_ms(Tier.EDGE) == pytest.approx(variant.compute_ms(Tier.EDGE))
        model.orchestrator.local.close()


def recording_server(seen: list[dict[str, str]], *, delay_s: float = 0.0) -> httpx.MockTransport:
    """An OIP server answering 7 after `delay_s`, keeping each request's headers."""

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        await asyncio.sleep(delay_s)
        _, tensors = decode_request(request.content, request.headers, max_bytes=1 << 20)
        body, headers = encode_response("m", {"label": np.full(len(tensors["input"]), 7, np.int64)}, binary=set())
        return httpx.Response(200, content=body, headers=headers)

    return httpx.MockTransport(handle)


def test_every_offload_carries_its_budget_and_a_deadline_keeps_the_fallbacks_reserve(
        variant_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:1]
    profiles = profiles_from_manifest(variant_bundle)

    async def go(deadline_ms: float | None, delay_s: float = 0.0) -> tuple[list[dict[str, str]], object, str]:
        seen: list[dict[str, str]] = []
        orch = Orchestrator(profiles=profiles, policy=make_policy("static:edge:teacher", profiles),
                            # A clock that stands still from the decision on: the header then carries the
                            # budget itself, not the budget less the microseconds spent before sending.
                            clients={Tier.EDGE: tier_client(variant_bundle, recording_server(seen, delay_s=delay_s),
                                                            clock=lambda: 0.0)},
                            local=LocalVariants(variant_bundle, profiles.names), accuracy_req=0.0,
                            deadline_ms=deadline_ms)
        answer = await orch.answer(x)
        await orch.aclose()
        return seen, answer, orch.fallback_variant

    seen, answer, _ = asyncio.run(go(None))
    assert float(seen[0][DEADLINE_HEADER.lower()]) == pytest.approx(1000.0)  # the client's own timeout
    assert answer.source is AnswerSource.EDGE_SERVER
    seen, answer, fallback = asyncio.run(go(300.0))
    reserve = profiles.variants[fallback].compute_ms(Tier.END)
    assert float(seen[0][DEADLINE_HEADER.lower()]) == pytest.approx(300.0 - reserve, abs=0.1)
    # a server slower than the budget: the device gives up at the deadline less its reserve and answers
    seen, answer, fallback = asyncio.run(go(150.0, delay_s=1.0))
    assert answer.source is AnswerSource.FALLBACK and answer.reason == FallbackReason.TIMEOUT
    assert answer.variant == fallback and answer.response_ms < 600.0


def test_each_request_may_carry_its_own_requirement(variant_bundle: Path,
                                                     tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:1]
    profiles = profiles_from_manifest(variant_bundle)
    teacher = profiles.variants["teacher"].accuracy

    async def go() -> list:
        orch = orchestrator(variant_bundle, "all-end", {})
        model = OrchestratorModel(orch, sample_shape=tuple(x.shape[1:]))
        plain = await orch.answer(x)
        strict = await orch.answer(x, accuracy_req=teacher)
        outputs = await model.predict({"input": x}, timeout_s=1.0, parameters={"accuracy_req": teacher})
        with pytest.raises(ProtocolError, match="accuracy_req"):
            await model.predict({"input": x}, timeout_s=1.0, parameters={"accuracy_req": "high"})
        await orch.aclose()
        return [plain.variant, strict.variant, outputs["variant"][0]]

    plain, strict, via_oip = asyncio.run(go())
    # The device's configured requirement 0: its fastest variant on the device by the profile (on a loaded
    # host the tiny variants' profiled times are close, so the expectation comes from the profile too).
    def fastest(req: float) -> str:
        return min(profiles.meeting(req), key=lambda n: profiles.variants[n].latency_ms[Tier.END])

    assert plain == fastest(0.0)
    assert strict == via_oip == fastest(teacher)  # the fastest of the variants meeting the teacher's accuracy
    assert profiles.variants[strict].accuracy >= teacher


@pytest.mark.parametrize(("status", "reason"), [
    (503, FallbackReason.OVERLOADED), (429, FallbackReason.OVERLOADED), (401, FallbackReason.UNAUTHORIZED),
    (403, FallbackReason.UNAUTHORIZED), (504, FallbackReason.TIMEOUT), (408, FallbackReason.BAD_RESPONSE),
    (500, FallbackReason.BAD_RESPONSE)])
def test_a_failed_status_is_the_reason_it_always_was_and_is_never_retried(
        variant_bundle: Path, status: int, reason: FallbackReason) -> None:
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(status, json={"error": "no"})

    async def go() -> OffloadError:
        client = tier_client(variant_bundle, httpx.MockTransport(handle))
        try:
            with pytest.raises(OffloadError) as info:
                await client.infer_model("teacher", {"input": np.zeros((1, 1, 8, 8), np.uint8)}, n=1)
        finally:
            await client.aclose()
        return info.value

    error = asyncio.run(go())
    assert error.reason is reason and error.tried
    assert len(requests) == 1  # one try: the device answers itself instead of retrying
    assert str(requests[0].url) == "http://edge/v2/models/teacher/infer"


def test_the_orchestrators_client_asks_for_labels_only_and_has_no_breaker(variant_bundle: Path) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("refused", request=request)

    async def go() -> None:
        client = tier_client(variant_bundle, httpx.MockTransport(handle))
        assert client.breaker is None and not client.circuit_open
        for _ in range(30):  # far past the edge's breaker_failures: every call still goes out
            with pytest.raises(OffloadError, match="unreachable"):
                await client.infer_model("teacher", {"input": np.zeros((1, 1, 8, 8), np.uint8)}, n=1,
                                         outputs=("label",))
        await client.aclose()

    asyncio.run(go())
    assert len(seen) == 30
    header, _ = decode_request(seen[0].content, seen[0].headers, max_bytes=1 << 20)
    assert [o.name for o in header.outputs or []] == ["label"]
    assert float(seen[0].headers[DEADLINE_HEADER]) <= 1000.0


def test_build_orchestrator_gives_each_remote_tier_its_own_client(variant_bundle: Path) -> None:
    model = build_orchestrator(EdgeSettings(bundle=variant_bundle, edge_server_url="http://127.0.0.1:9/",
                                            cloud_url="http://127.0.0.1:10", policy="all-edge",
                                            orchestrator_timeout_ms=250.0, retries=5))
    clients = model.orchestrator.clients
    assert {tier: c.base_url for tier, c in clients.items()} == {Tier.EDGE: "http://127.0.0.1:9",
                                                                 Tier.CLOUD: "http://127.0.0.1:10"}
    for client in clients.values():
        assert client.policy == offload_policy(250.0)  # not the edge's retries
        assert client.policy.retries == 0 and client.policy.breaker is None
    asyncio.run(model.orchestrator.aclose())


def test_image_files_are_decoded_for_the_device_and_uploaded_as_they_came(
        variant_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    from shared.image_codec import as_bytes_tensor, encode_image

    x = tiny_test_split[0][:1]
    files = as_bytes_tensor([encode_image(x[0])])
    seen: list[np.ndarray] = []

    def handle(request: httpx.Request) -> httpx.Response:
        _, tensors = decode_request(request.content, request.headers, max_bytes=1 << 20)
        seen.append(tensors["input"])
        body, headers = encode_response("m", {"label": np.full(1, 3, np.int64)}, binary=set())
        return httpx.Response(200, content=body, headers=headers)

    async def go() -> tuple[dict, dict, dict]:
        local = orchestrator(variant_bundle, "all-end", {})
        remote = orchestrator(variant_bundle, "static:edge:variant-b",
                              {Tier.EDGE: tier_client(variant_bundle, httpx.MockTransport(handle))})
        on_device = OrchestratorModel(local, sample_shape=tuple(x.shape[1:]))
        offloaded = OrchestratorModel(remote, sample_shape=tuple(x.shape[1:]))
        out = (await on_device.predict({"input": files}, timeout_s=1.0, parameters={}),
               await on_device.predict({"input": x}, timeout_s=1.0, parameters={}),
               await offloaded.predict({"input": files}, timeout_s=1.0, parameters={}))
        await local.aclose()
        await remote.aclose()
        return out

    from_file, from_pixels, sent = asyncio.run(go())
    assert from_file["label"].tolist() == from_pixels["label"].tolist()  # PNG is lossless: the same pixels
    assert sent["label"].tolist() == [3] and sent["tier"].tolist() == ["edge"]
    assert seen[0].dtype == object and seen[0].tolist() == [files[0]]  # the file itself went to the server


def test_the_orchestrator_keeps_every_server_connection_warm_until_closed(
        variant_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    # A device answering on its own (all-end) sends nothing for a while: readiness requests keep each
    # server's connection open, so its next offload pays no handshake; closing stops them.
    x = tiny_test_split[0][:1]
    paths: dict[str, list[str]] = {"edge": [], "cloud": []}

    def server(name: str) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            paths[name].append(request.url.path)
            return httpx.Response(200)
        return httpx.MockTransport(handle)

    async def go() -> None:
        profiles = profiles_from_manifest(variant_bundle)
        orch = Orchestrator(profiles=profiles, policy=make_policy("all-end", profiles),
                            clients={Tier.EDGE: tier_client(variant_bundle, server("edge")),
                                     Tier.CLOUD: tier_client(variant_bundle, server("cloud"))},
                            local=LocalVariants(variant_bundle, profiles.names), accuracy_req=0.0, keep_warm_s=0.02)
        await orch.answer(x)
        await asyncio.sleep(0.2)
        await orch.aclose()
        seen = {k: len(v) for k, v in paths.items()}
        await asyncio.sleep(0.1)
        assert {k: len(v) for k, v in paths.items()} == seen  # nothing after close

    asyncio.run(go())
    for name in ("edge", "cloud"):
        assert len(paths[name]) >= 2 and set(paths[name]) == {"/v2/health/ready"}


def hedged(bundle: Path, transport: httpx.AsyncBaseTransport, rewards: list[float], *, slowdown: float = 1.0,
           timeout_ms: float = 3000.0) -> Orchestrator:
    """An all-edge+hedge orchestrator whose policy's rewards land in `rewards`."""
    profiles = profiles_from_manifest(bundle)
    policy = make_policy("all-edge+hedge", profiles)
    policy.update = lambda decision, r, obs=None: rewards.append(r)  # type: ignore[method-assign]
    return Orchestrator(profiles=profiles, policy=policy, accuracy_req=0.0,
                        clients={Tier.EDGE: tier_client(bundle, transport, timeout_ms=timeout_ms)},
                        local=LocalVariants(bundle, profiles.names, slowdown=slowdown))


def test_a_hedged_offload_answers_from_the_device_when_the_server_is_slow_and_still_hears_it(
        variant_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = tiny_test_split
    rewards: list[float] = []

    async def go() -> tuple[object, float, float]:
        orch = hedged(variant_bundle, recording_server([], delay_s=0.5), rewards)
        answer = await orch.answer(x[:1])
        assert orch.obs.net_ms[Tier.EDGE] == 0.0 and len(orch._background) == 1  # the upload goes on
        await asyncio.sleep(0.8)
        heard = orch.obs.net_ms[Tier.EDGE]
        await orch.aclose()
        return answer, heard, len(orch._background)

    answer, heard, pending = asyncio.run(go())
    assert answer.source is AnswerSource.FALLBACK and answer.reason == FallbackReason.LOCAL_FIRST
    assert answer.tier is Tier.EDGE and answer.response_ms < 400.0
    assert answer.labels.tolist() != [7] or y[0] == 7  # the device's own pass answered, not the server's 7
    # the server's answer half a second later was still the device's news of the edge's link
    assert heard >= 450.0 and pending == 0
    # a won race is no failure: the reward is the latency alone, without the failure penalty
    assert rewards == [pytest.approx(-answer.response_ms / 100.0, rel=0.05)]


def test_a_hedged_offload_takes_the_servers_answer_when_it_comes_first(variant_bundle: Path,
                                                                      tiny_test_split: tuple[np.ndarray, np.ndarray]
                                                                      ) -> None:
    x = tiny_test_split[0][:1]
    rewards: list[float] = []

    async def go() -> object:
        # a device 200x slower than this host: the local pass takes long enough for the server to win
        orch = hedged(variant_bundle, fake_server(7), rewards, slowdown=200.0)
        answer = await orch.answer(x)
        await orch.aclose()
        return answer

    answer = asyncio.run(go())
    assert answer.source is AnswerSource.EDGE_SERVER and answer.labels.tolist() == [7] and answer.reason == ""


def test_a_hedged_offload_to_a_dead_server_is_a_fallback_with_its_reason(
        variant_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:1]
    rewards: list[float] = []

    async def go() -> object:
        orch = hedged(variant_bundle, refusing(), rewards, slowdown=50.0)
        answer = await orch.answer(x)
        await orch.aclose()
        return answer

    answer = asyncio.run(go())
    # the refusal comes before the slowed pass ends: the device's pass answers, and the failure is named and penalised
    assert answer.source is AnswerSource.FALLBACK and answer.reason == FallbackReason.UNREACHABLE
    assert rewards == [pytest.approx(-answer.response_ms / 100.0 - FAILURE_PENALTY, rel=0.05)]


def test_the_devices_radio_reports_its_replayed_uplink_to_the_policy(variant_bundle: Path, tmp_path: Path,
                                                                      tiny_test_split: tuple[np.ndarray, np.ndarray]
                                                                      ) -> None:
    # 2 s at 4 Mbit/s, then 3 s of nothing, repeating: the policy must see the rate, then the stall growing
    trace_file = tmp_path / "uplink"
    trace_file.write_text("".join(f"{t / 10:.1f}\t{4.0 if (t % 50) < 20 else 0.0}\n" for t in range(500)))
    settings = EdgeSettings(bundle=variant_bundle, edge_server_url="http://127.0.0.1:9", policy="all-end",
                            radio_trace=trace_file, radio_trace_start_unix=time.time() - 1.5)  # 1.5 s in: flowing
    model = build_orchestrator(settings)
    orch = model.orchestrator
    seen: list[tuple[float | None, float]] = []
    choose = orch.policy.choose

    def spy(obs, actions):
        seen.append((obs.uplink_mbit_s, obs.stalled_ms))
        return choose(obs, actions)

    orch.policy.choose = spy
    x = tiny_test_split[0][:1]

    async def go() -> None:
        await orch.answer(x)
        orch.radio_start_unix -= 2.0  # 3.5 s into the trace: 1.5 s into its stall
        await orch.answer(x)
        await orch.aclose()

    asyncio.run(go())
    assert seen[0][0] == pytest.approx(4.0, rel=0.05) and seen[0][1] == 0.0
    assert seen[1][0] < 0.1 and seen[1][1] == pytest.approx(1500.0, abs=150.0)
    # without a radio trace, the report is unknown, as before
    plain = build_orchestrator(EdgeSettings(bundle=variant_bundle, edge_server_url="http://127.0.0.1:9"))
    assert plain.orchestrator.radio is None


def test_a_radio_start_without_its_trace_is_refused(variant_bundle: Path) -> None:
    with pytest.raises(ValueError, match="radio_trace"):
        EdgeSettings(bundle=variant_bundle, radio_trace_start_unix=1.0)
