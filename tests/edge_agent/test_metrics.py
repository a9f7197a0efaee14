"""Metrics after a known workload, and the sliding offload-ratio window."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge_agent.agent import open_agent
from edge_agent.metrics import SlidingRatio
from edge_agent.settings import EdgeSettings
from tests.edge_agent.helpers import StubBehaviour, closed_port_url, metric

Make = Callable[..., EdgeSettings]


def test_sliding_ratio_matches_a_naive_window() -> None:
    rng = np.random.default_rng(0)
    ratio = SlidingRatio(50)
    history: list[bool] = []
    for size in [3, 17, 49, 50, 51, 1, 120, 7]:
        flags = rng.random(size) < 0.3
        history.extend(flags.tolist())
        assert ratio.extend(flags) == pytest.approx(np.mean(history[-50:]))
    assert SlidingRatio(5).value == 0.0
    with pytest.raises(ValueError, match="window"):
        SlidingRatio(0)


@pytest.mark.anyio
async def test_metrics_after_a_known_workload(make_settings: Make, stub: tuple[str, StubBehaviour],
                                              tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    x = tiny_test_split[0][:100]
    async with open_agent(make_settings(cloud_url=url, ratio_window=1000)) as agent:
        flagged = int(agent.engine.run(x).offload.sum())
        [_ async for _ in agent.stream([x[:50], x[50:]])]
        behaviour.mode = "503"
        await agent.infer(x[:10], strategy="cloud_only")
        text = agent.metrics.exposition().decode()
    assert metric(text, "edgecloud_edge_requests_total", {"source": "cloud"}) == flagged
    assert metric(text, "edgecloud_edge_requests_total", {"source": "edge"}) == 100 - flagged
    assert metric(text, "edgecloud_edge_requests_total", {"source": "edge-fallback"}) == 10
    assert metric(text, "edgecloud_edge_offload_attempts_total") == flagged + 10
    assert metric(text, "edgecloud_edge_offload_success_total") == flagged  # the 503s are not successes
    assert metric(text, "edgecloud_edge_fallbacks_total", {"reason": "overloaded"}) == 10
    assert metric(text, "edgecloud_edge_fallbacks_total", {"reason": "timeout"}) == 0
    assert metric(text, "edgecloud_edge_offload_ratio") == pytest.approx((flagged + 10) / 110)
    assert metric(text, "edgecloud_edge_latency_seconds_count", {"source": "edge"}) == 100 - flagged
    assert metric(text, "edgecloud_edge_latency_seconds_count", {"source": "cloud"}) == flagged
    assert metric(text, "edgecloud_edge_cloud_rtt_seconds_count") == 2  # one request per batch that offloaded
    assert metric(text, "edgecloud_edge_student_seconds_count") == 3
    assert metric(text, "edgecloud_edge_decision_seconds_count") == 2  # cloud_only needs no decision
    assert metric(text, "edgecloud_edge_offload_bytes_total") > (flagged + 10) * 64


@pytest.mark.anyio
async def test_circuit_open_fallbacks_are_not_attempts(make_settings: Make,
                                                       tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:5]
    settings = make_settings(cloud_url=closed_port_url(), retries=0, breaker_failures=1, breaker_reset_s=60)
    async with open_agent(settings) as agent:
        await agent.infer(x, strategy="cloud_only")
        await agent.infer(x, strategy="cloud_only")
        text = agent.metrics.exposition().decode()
    assert metric(text, "edgecloud_edge_fallbacks_total", {"reason": "unreachable"}) == 5
    assert metric(text, "edgecloud_edge_fallbacks_total", {"reason": "circuit_open"}) == 5
    assert metric(text, "edgecloud_edge_offload_attempts_total") == 5
    assert metric(text, "edgecloud_edge_offload_success_total") == 0
    assert metric(text, "edgecloud_edge_offload_ratio") == pytest.approx(0.5)


def test_each_agent_has_its_own_registry(tiny_bundle: object) -> None:
    from edge_agent.metrics import EdgeMetrics

    a, b = EdgeMetrics(ratio_window=10), EdgeMetrics(ratio_window=10)
    a.record_answers("edge", count=3, latency_s=0.01)
    assert metric(a.exposition().decode(), "edgecloud_edge_requests_total", {"source": "edge"}) == 3
    assert metric(b.exposition().decode(), "edgecloud_edge_requests_total", {"source": "edge"}) == 0
