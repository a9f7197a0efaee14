"""The runtime's one batcher on its own, driven by asyncio: limits, chunking, deadlines, failures, coalescing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.batcher import Batcher, BatcherStoppedError, ComputeError, DeadlineExceededError, QueueFullError
from serving.metrics import ServerMetrics
from shared.oip import ProtocolError
from tests.cloud_server.helpers import FakeBackend, metric


def _compute(backend: FakeBackend):
    return lambda x, tags: {"logits": backend.infer(x)}


def _batcher(backend: FakeBackend, metrics: ServerMetrics | None = None, **limits: float) -> Batcher:
    options = {"max_batch_size": 4, "max_queue_delay_s": 0.05, "max_queue_size": 64, **limits}
    model_metrics = (metrics or ServerMetrics()).for_model("m")
    return Batcher(_compute(backend), metrics=model_metrics, name="m", **options)  # type: ignore[arg-type]


def _x(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 1, 8, 8), value, dtype=np.float32)


def test_batches_never_exceed_max_batch_size_and_results_split_back() -> None:
    backend = FakeBackend()

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = _batcher(backend, max_batch_size=4)
        try:
            return await asyncio.gather(*(batcher.submit(_x(i, n=1 + i % 3), timeout_s=5) for i in range(6)))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert all(size <= 4 for size in backend.batch_sizes)
    assert sum(backend.batch_sizes) == sum(1 + i % 3 for i in range(6))
    assert len(backend.batch_sizes) < 6  # merged
    for i, outputs in enumerate(results):
        logits = outputs["logits"]
        assert logits.shape == (1 + i % 3, 10)
        np.testing.assert_array_equal(logits, i)


def test_a_request_larger_than_a_batch_is_computed_in_chunks() -> None:
    backend = FakeBackend()

    async def scenario() -> dict[str, np.ndarray]:
        batcher = _batcher(backend, max_batch_size=4)
        try:
            return await batcher.submit(np.arange(10, dtype=np.float32).repeat(64).reshape(10, 1, 8, 8),
                                        timeout_s=5)
        finally:
            await batcher.stop()

    logits = asyncio.run(scenario())["logits"]
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

    async def scenario() -> list[BaseException | dict[str, np.ndarray]]:
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
    with pytest.raises(ValueError, match=r"'m'.*max_batch_size=0"):
        Batcher(_compute(FakeBackend()), max_batch_size=0, max_queue_delay_s=0.0, max_queue_size=1, name="m")


def test_a_deadline_that_passes_while_queued_is_a_504_and_is_never_computed() -> None:
    backend = FakeBackend()
    backend.gate.clear()

    async def scenario() -> None:
        batcher = _batcher(backend, max_batch_size=1, max_queue_delay_s=0.0)
        first = asyncio.ensure_future(batcher.submit(_x(0), timeout_s=5))
        while not backend.entered.is_set():
            await asyncio.sleep(0.001)
        late = asyncio.ensure_future(batcher.submit(_x(7), timeout_s=0.05))
        with pytest.raises(DeadlineExceededError, match="deadline of 50 ms passed"):
            await late
        backend.gate.set()
        await first
        await batcher.stop()

    asyncio.run(scenario())
    assert [float(b[0, 0, 0, 0]) for b in backend.batches] == [0.0]  # the late request never reached compute


def test_without_a_window_requests_arriving_during_a_pass_share_the_next_one() -> None:
    backend = FakeBackend()
    backend.gate.clear()

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = _batcher(backend, max_batch_size=64, max_queue_delay_s=0.0)
        first = asyncio.ensure_future(batcher.submit(_x(0), timeout_s=5))  # an idle model computes at once
        while not backend.entered.is_set():
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit(_x(i, n=2), timeout_s=5)) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        backend.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert backend.batch_sizes == [1, 10]  # the five that waited went together
    for i, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["logits"], i)


def test_a_failed_merged_pass_fails_only_the_request_that_broke_it() -> None:
    passes: list[int] = []

    def compute(x: np.ndarray, tags: object) -> dict[str, np.ndarray]:
        passes.append(len(x))
        if (x == 255).all(axis=(1, 2, 3)).any():
            raise RuntimeError("onnxruntime fell over")
        return {"logits": x.reshape(len(x), -1)[:, :10]}

    async def scenario() -> list[BaseException | dict[str, np.ndarray]]:
        batcher = Batcher(compute, max_batch_size=64, max_queue_delay_s=0.0, max_queue_size=64, name="m")
        try:
            return await asyncio.gather(batcher.submit(_x(1, n=6), timeout_s=5),
                                        batcher.submit(_x(255, n=2), timeout_s=5),
                                        batcher.submit(_x(3, n=6), timeout_s=5), return_exceptions=True)
        finally:
            await batcher.stop()

    outs = asyncio.run(scenario())
    assert passes == [14, 6, 2, 6]  # merged, failed, then each request alone
    assert isinstance(outs[1], ComputeError) and "RuntimeError: onnxruntime fell over" in str(outs[1])
    assert isinstance(outs[0], dict) and isinstance(outs[2], dict)
    np.testing.assert_array_equal(outs[0]["logits"], 1)
    np.testing.assert_array_equal(outs[2]["logits"], 3)


def test_a_request_error_from_the_model_passes_through_with_its_status() -> None:
    def compute(x: np.ndarray, tags: object) -> dict[str, np.ndarray]:
        raise ProtocolError("non-finite logits", status_code=422)

    async def scenario() -> None:
        batcher = Batcher(compute, max_batch_size=4, max_queue_delay_s=0.0, max_queue_size=8, name="m")
        with pytest.raises(ProtocolError, match="non-finite") as err:
            await batcher.submit(_x(1), timeout_s=5)
        assert err.value.status_code == 422
        await batcher.stop()

    asyncio.run(scenario())


def test_tags_reach_the_compute_once_per_request() -> None:
    seen: list[list[object]] = []

    def compute(x: np.ndarray, tags: list[object]) -> dict[str, np.ndarray]:
        seen.append(list(tags))
        return {"y": np.zeros(len(x))}

    async def scenario() -> None:
        batcher = Batcher(compute, max_batch_size=64, max_queue_delay_s=0.01, max_queue_size=64, name="m")
        await asyncio.gather(*(batcher.submit(_x(i), timeout_s=5, tag=i % 2 == 0) for i in range(3)))
        await batcher.stop()

    asyncio.run(scenario())
    assert seen == [[True, False, True]]


def test_outputs_of_the_wrong_length_are_a_compute_error() -> None:
    async def scenario() -> None:
        batcher = Batcher(lambda x, tags: {"y": np.zeros(len(x) + 1)}, max_batch_size=4, max_queue_delay_s=0.0,
                          max_queue_size=8, name="m")
        with pytest.raises(ComputeError, match=r"'m' returned outputs of shapes \{'y': \[3\]\} for 2 samples"):
            await batcher.submit(_x(1, n=2), timeout_s=5)
        await batcher.stop()

    asyncio.run(scenario())


def test_stop_fails_queued_and_computing_requests_with_503_and_refuses_new_ones() -> None:
    backend = FakeBackend()
    backend.gate.clear()

    async def scenario() -> None:
        batcher = _batcher(backend, max_batch_size=1, max_queue_delay_s=0.0)
        computing = asyncio.ensure_future(batcher.submit(_x(0), timeout_s=5))
        while not backend.entered.is_set():
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(batcher.submit(_x(1), timeout_s=5))
        await asyncio.sleep(0.01)
        await batcher.stop()
        for task in (computing, queued):
            with pytest.raises(BatcherStoppedError, match="'m' is unloading"):
                await task
        with pytest.raises(BatcherStoppedError):
            await batcher.submit(_x(2), timeout_s=5)
        backend.gate.set()

    asyncio.run(scenario())


def test_metrics_are_labelled_by_model() -> None:
    backend = FakeBackend()
    metrics = ServerMetrics()

    async def scenario() -> None:
        batcher = _batcher(backend, metrics, max_batch_size=4, max_queue_delay_s=0.0)
        await asyncio.gather(*(batcher.submit(_x(i), timeout_s=5) for i in range(3)))
        await batcher.stop()

    asyncio.run(scenario())
    text = metrics.exposition().decode()
    assert metric(text, "edgecloud_model_batch_size_sum", {"model": "m"}) == 3
    assert metric(text, "edgecloud_model_compute_seconds_count", {"model": "m"}) == len(backend.batch_sizes)
    assert metric(text, "edgecloud_model_queue_depth", {"model": "m"}) == 0
