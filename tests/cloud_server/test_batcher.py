"""DynamicBatcher on its own, driven by asyncio: batch limits, chunking, cancellation, failures."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cloud_server.batcher import ComputeError, DeadlineExceededError, DynamicBatcher, QueueFullError
from cloud_server.metrics import CloudMetrics
from tests.cloud_server.helpers import FakeBackend


def _batcher(backend: FakeBackend, **limits: float) -> DynamicBatcher:
    options = {"max_batch_size": 4, "max_queue_delay_s": 0.05, "max_queue_size": 64, **limits}
    return DynamicBatcher(backend.infer, metrics=CloudMetrics(), **options)  # type: ignore[arg-type]


def _x(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 1, 8, 8), value, dtype=np.float32)


def test_batches_never_exceed_max_batch_size_and_results_split_back() -> None:
    backend = FakeBackend()

    async def scenario() -> list[np.ndarray]:
        batcher = _batcher(backend, max_batch_size=4)
        try:
            return await asyncio.gather(*(batcher.submit(_x(i, n=1 + i % 3), timeout_s=5) for i in range(6)))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert all(size <= 4 for size in backend.batch_sizes)
    assert sum(backend.batch_sizes) == sum(1 + i % 3 for i in range(6))
    assert len(backend.batch_sizes) < 6  # merged
    for i, logits in enumerate(results):
        assert logits.shape == (1 + i % 3, 10)
        np.testing.assert_array_equal(logits, i)


def test_a_request_larger_than_a_batch_is_computed_in_chunks() -> None:
    backend = FakeBackend()

    async def scenario() -> np.ndarray:
        batcher = _batcher(backend, max_batch_size=4)
        try:
            return await batcher.submit(np.arange(10, dtype=np.float32).repeat(64).reshape(10, 1, 8, 8),
                                        timeout_s=5)
        finally:
            await batcher.stop()

    logits = asyncio.run(scenario())
    assert backend.batch_sizes == [4, 4, 2]
    np.testing.assert_array_equal(logits[:, 0], np.arange(10))


def test_queue_bound_counts_samples() -> None:
    backend = FakeBackend()
    backend.gate.clear()

    async def scenario() -> None:
        batcher = _batcher(backend, max_batch_size=1, max_queue_size=3, max_queue_delay_s=0.0)
        first = asyncio.ensure_future(batcher.submit(_x(0), timeout_s=5))
        while not backend.entered.is_set():
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(batcher.submit(_x(1, n=3), timeout_s=5))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match="3 of 3 samples waiting, request has 1"):
            await batcher.submit(_x(2), timeout_s=5)
        backend.gate.set()
        await asyncio.gather(first, queued)
        await batcher.stop()

    asyncio.run(scenario())


def test_abandoned_requests_free_their_slots_and_are_skipped() -> None:
    backend = FakeBackend()
    backend.gate.clear()

    async def scenario() -> None:
        batcher = _batcher(backend, max_batch_size=1, max_queue_delay_s=0.0)
        first = asyncio.ensure_future(batcher.submit(_x(0), timeout_s=5))
        while not backend.entered.is_set():
            await asyncio.sleep(0.001)
        gone = asyncio.ensure_future(batcher.submit(_x(9, n=2), timeout_s=5))
        await asyncio.sleep(0.01)
        assert batcher.depth == 2
        gone.cancel()  # the client disconnected
        await asyncio.gather(gone, return_exceptions=True)
        assert batcher.depth == 0
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(_x(8), timeout_s=0.02)
        assert batcher.depth == 0
        backend.gate.set()
        await first
        await batcher.stop()

    asyncio.run(scenario())
    assert backend.batch_sizes == [1]


def test_backend_failure_reaches_every_waiter_of_the_batch() -> None:
    backend = FakeBackend()
    backend.fail_with = MemoryError("out of memory")

    async def scenario() -> list[BaseException | np.ndarray]:
        batcher = _batcher(backend)
        try:
            return await asyncio.gather(*(batcher.submit(_x(i), timeout_s=5) for i in range(3)),
                                        return_exceptions=True)
        finally:
            await batcher.stop()

    for outcome in asyncio.run(scenario()):
        assert isinstance(outcome, ComputeError)
        assert "MemoryError: out of memory" in str(outcome)


def test_bad_limits_are_named() -> None:
    with pytest.raises(ValueError, match="max_batch_size=0"):
        DynamicBatcher(FakeBackend().infer, max_batch_size=0, max_queue_delay_s=0.0, max_queue_size=1,
                       metrics=CloudMetrics())
