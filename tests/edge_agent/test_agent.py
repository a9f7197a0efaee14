"""EdgeAgent: routing by the offloader, pipelined offloads, fallbacks that never drop a sample."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest

from edge_agent.agent import Answers, EdgeAgent, NoCloudError, open_agent
from edge_agent.engine import EdgeEngine
from edge_agent.settings import EdgeSettings
from tests.edge_agent.helpers import StubBehaviour, closed_port_url, stub_labels

pytestmark = pytest.mark.anyio
Make = Callable[..., EdgeSettings]


def batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i:i + size] for i in range(0, len(x), size)]


def concat(answers: list[Answers]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.concatenate([a.labels for a in answers]), np.concatenate([a.sources for a in answers]),
            np.concatenate([a.reasons for a in answers]))


@asynccontextmanager
async def agent_for(settings: EdgeSettings) -> AsyncIterator[EdgeAgent]:
    async with open_agent(settings) as agent:
        yield agent


async def test_flagged_samples_go_to_the_cloud_the_rest_stay(make_settings: Make, stub: tuple[str, StubBehaviour],
                                                             tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    x = tiny_test_split[0][:200]
    async with agent_for(make_settings(cloud_url=url)) as agent:
        out = agent.engine.run(x)
        answers = [a async for a in agent.stream(batches(x, 32))]
    labels, sources, reasons = concat(answers)
    assert len(labels) == len(x)
    flagged = out.offload
    assert set(sources[flagged]) == {"cloud"} and set(sources[~flagged]) == {"edge"}
    np.testing.assert_array_equal(labels[flagged], stub_labels(x[flagged]))       # the cloud's answers
    np.testing.assert_array_equal(labels[~flagged], out.logits.argmax(1)[~flagged])  # the student's
    assert set(reasons) == {""}
    assert sum(behaviour.batch_sizes) == flagged.sum()  # only the flagged pixels crossed the link


async def test_strategies(make_settings: Make, stub: tuple[str, StubBehaviour],
                          tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    x = tiny_test_split[0][:50]
    async with agent_for(make_settings(cloud_url=url)) as agent:
        edge_only = await agent.infer(x, strategy="edge_only")
        cloud_only = await agent.infer(x, strategy="cloud_only")
        with pytest.raises(ValueError, match="unknown strategy 'sometimes'"):
            await agent.infer(x, strategy="sometimes")
    assert set(edge_only.sources) == {"edge"}
    assert set(cloud_only.sources) == {"cloud"}
    np.testing.assert_array_equal(cloud_only.labels, stub_labels(x))
    assert behaviour.batch_sizes == [50]


async def test_without_a_cloud_everything_is_answered_at_the_edge(make_settings: Make,
                                                                  tiny_test_split: tuple[np.ndarray, np.ndarray]
                                                                  ) -> None:
    x = tiny_test_split[0][:100]
    async with agent_for(make_settings()) as agent:
        answers = [a async for a in agent.stream(batches(x, 30))]
        with pytest.raises(NoCloudError, match="cloud_only"):
            await agent.infer(x, strategy="cloud_only")
    labels, sources, _ = concat(answers)
    assert set(sources) == {"edge"}
    np.testing.assert_array_equal(labels, agent.engine.logits(x).argmax(1))


async def test_unreachable_cloud_falls_back_for_every_flagged_sample(make_settings: Make,
                                                                     tiny_test_split: tuple[np.ndarray, np.ndarray]
                                                                     ) -> None:
    x = tiny_test_split[0][:120]
    settings = make_settings(cloud_url=closed_port_url(), retries=1, breaker_failures=1000)
    async with agent_for(settings) as agent:
        flagged = agent.engine.run(x).offload
        labels, sources, reasons = concat([a async for a in agent.stream(batches(x, 40))])
        student = agent.engine.logits(x).argmax(1)
    assert len(labels) == len(x)  # never dropped
    assert set(sources[flagged]) == {"edge-fallback"} and set(reasons[flagged]) == {"unreachable"}
    assert set(sources[~flagged]) == {"edge"} and set(reasons[~flagged]) == {""}
    np.testing.assert_array_equal(labels, student)


async def test_offloads_overlap_with_the_next_batches(make_settings: Make, stub: tuple[str, StubBehaviour],
                                                      tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    behaviour.delay_s = 0.2
    x = tiny_test_split[0][:8 * 20]
    async with agent_for(make_settings(cloud_url=url, max_inflight=8)) as agent:
        started = time.perf_counter()
        answers = [a async for a in agent.stream(batches(x, 20), strategy="cloud_only")]
        elapsed = time.perf_counter() - started
    assert [len(a) for a in answers] == [20] * 8
    labels, sources, _ = concat(answers)
    np.testing.assert_array_equal(labels, stub_labels(x))  # in input order despite the overlap
    assert set(sources) == {"cloud"}
    assert elapsed < 8 * 0.2 / 2  # sequential would take 1.6 s


async def test_max_inflight_bounds_concurrent_offloads(make_settings: Make, stub: tuple[str, StubBehaviour],
                                                       tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    behaviour.delay_s = 0.1
    x = tiny_test_split[0][:60]
    async with agent_for(make_settings(cloud_url=url, max_inflight=2)) as agent:
        started = time.perf_counter()
        answers = [a async for a in agent.stream(batches(x, 10), strategy="cloud_only")]
        elapsed = time.perf_counter() - started
    assert sum(len(a) for a in answers) == 60
    assert elapsed >= 3 * 0.1 * 0.9  # 6 requests, 2 at a time, 0.1 s each


def test_agent_rejects_a_bad_bound(tiny_bundle: object) -> None:
    from edge_agent.metrics import EdgeMetrics

    with pytest.raises(ValueError, match="max_inflight"):
        EdgeAgent(EdgeEngine.load(tiny_bundle), metrics=EdgeMetrics(ratio_window=10),  # type: ignore[arg-type]
                  max_inflight=0)


async def test_concurrent_requests_share_passes_up_to_the_merge_cap(
        make_settings: Make, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    import asyncio

    x = tiny_test_split[0][:64]
    async with agent_for(make_settings(max_merged_samples=16)) as agent:
        sizes: list[int] = []
        run = agent.engine.run

        def counted(xb: np.ndarray, **kw: object) -> object:
            sizes.append(len(xb))
            return run(xb, **kw)

        agent.engine.run = counted  # type: ignore[method-assign]
        answers = await asyncio.gather(*(agent.infer(b, strategy="edge_only") for b in batches(x, 8)))
    assert sum(sizes) == 64 and max(sizes) <= 16
    np.testing.assert_array_equal(np.concatenate([a.labels for a in answers]), agent.engine.run(x).logits.argmax(1))
