"""Concurrent requests share student passes, and each still gets exactly its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import open_agent
from edge_agent.coalesce import StudentCoalescer
from edge_agent.engine import EdgeEngine, InputError, StudentOutput
from edge_agent.settings import EdgeSettings

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path) -> EdgeEngine:
    return EdgeEngine.load(tiny_bundle)


async def test_concurrent_requests_share_passes_and_get_their_own_answers(
        engine: EdgeEngine, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:96]
    passes: list[int] = []

    def run(batch: np.ndarray, decide: bool) -> StudentOutput:
        passes.append(len(batch))
        return engine.run(batch, decide=decide)

    with ThreadPoolExecutor(max_workers=1) as pool:
        coalescer = StudentCoalescer(run, executor=lambda: pool, max_samples=64)
        requests = [x[i:i + 4] for i in range(0, len(x), 4)]  # 24 requests of 4 samples
        outs = await asyncio.gather(*(coalescer.compute(r, decide=True) for r in requests))
    assert passes == [64, 32]  # 24 requests in two passes, none larger than max_samples
    for r, out in zip(requests, outs, strict=True):
        alone = engine.run(r)
        np.testing.assert_array_equal(out.logits.argmax(1), alone.logits.argmax(1))
        np.testing.assert_array_equal(out.offload, alone.offload)


async def test_a_failed_pass_fails_only_the_request_that_broke_it(
        engine: EdgeEngine, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:12]
    poison = np.full((2, 1, 8, 8), 255, dtype=np.uint8)  # stands for any input that breaks a pass
    passes: list[int] = []

    def run(batch: np.ndarray, decide: bool) -> StudentOutput:
        passes.append(len(batch))
        if (batch == 255).all(axis=(1, 2, 3)).any():
            raise RuntimeError("onnxruntime fell over")
        return engine.run(batch, decide=decide)

    with ThreadPoolExecutor(max_workers=1) as pool:
        coalescer = StudentCoalescer(run, executor=lambda: pool)
        outs = await asyncio.gather(coalescer.compute(x[:6], decide=False), coalescer.compute(poison, decide=False),
                                    coalescer.compute(x[6:], decide=False), return_exceptions=True)
    assert passes == [14, 6, 2, 6]  # merged, failed, then each request alone
    assert isinstance(outs[1], RuntimeError) and "fell over" in str(outs[1])
    for out, part in ((outs[0], x[:6]), (outs[2], x[6:])):
        assert isinstance(out, StudentOutput)
        np.testing.assert_array_equal(out.logits, engine.run(part, decide=False).logits)


async def test_a_cancelled_request_leaves_the_others_answered(engine: EdgeEngine,
                                                              tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:12]
    gate = threading.Event()

    def run(batch: np.ndarray, decide: bool) -> StudentOutput:
        gate.wait(timeout=10)
        return engine.run(batch, decide=decide)

    with ThreadPoolExecutor(max_workers=1) as pool:
        coalescer = StudentCoalescer(run, executor=lambda: pool)
        first = asyncio.create_task(coalescer.compute(x[:4], decide=False))
        gone = asyncio.create_task(coalescer.compute(x[4:8], decide=False))
        kept = asyncio.create_task(coalescer.compute(x[8:], decide=False))
        await asyncio.sleep(0.05)
        gone.cancel()  # a client that hung up while waiting for the next pass
        gate.set()
        out_first, out_kept = await first, await kept
    np.testing.assert_array_equal(out_kept.logits, engine.run(x[8:], decide=False).logits)
    assert len(out_first.logits) == 4 and gone.cancelled()


async def test_a_bad_request_fails_alone_among_concurrent_good_ones(
        make_settings: Callable[..., EdgeSettings], tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:40]
    async with open_agent(make_settings()) as agent:  # edge-only
        good = [asyncio.create_task(agent.infer(x[i:i + 8])) for i in range(0, 40, 8)]
        bad = asyncio.create_task(agent.infer(np.zeros((2, 3, 8, 8), dtype=np.uint8)))
        answers = await asyncio.gather(*good)
        with pytest.raises(InputError, match="does not match"):
            await bad
        expected = agent.engine.logits(x).argmax(1)
    np.testing.assert_array_equal(np.concatenate([a.labels for a in answers]), expected)
