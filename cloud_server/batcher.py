"""Dynamic batching: merge concurrent requests into one forward pass, as Triton's dynamic batcher does.

The oldest queued request waits at most `max_queue_delay_s` for others to join; a batch closes
early once it holds `max_batch_size` samples. Compute runs in one worker thread so the event loop
keeps accepting (and rejecting) requests meanwhile, and while one batch computes the next one
fills, so under load batches grow by themselves. The queue is bounded in *samples*: a request
that does not fit is refused at once (503), never parked, because a client behind a full queue
is better served by its own fallback than by waiting. Work whose deadline passes while queued
is dropped without being computed (504).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cloud_server.metrics import CloudMetrics

logger = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The queue cannot take the request's samples now (503 with Retry-After)."""


class DeadlineExceededError(Exception):
    """The request's time budget ran out before its result was ready; it was not computed (504)."""


class BatcherStoppedError(Exception):
    """The server is shutting down (503)."""


class ComputeError(RuntimeError):
    """The backend failed on a batch (500); the message names the batch size and the cause."""


@dataclass(eq=False)
class _Pending:
    x: np.ndarray  # (n, C, H, W) float32, normalised
    deadline: float  # event-loop clock
    enqueued: float
    future: asyncio.Future[np.ndarray] = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


class DynamicBatcher:
    def __init__(self, compute: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int,
                 max_queue_delay_s: float, max_queue_size: int, metrics: CloudMetrics) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_queue_delay_s < 0:
            raise ValueError(f"bad batcher limits: max_batch_size={max_batch_size}, "
                             f"max_queue_size={max_queue_size}, max_queue_delay_s={max_queue_delay_s}")
        self._compute = compute
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self._delay = max_queue_delay_s
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._depth = 0  # samples in self._queue
        self._inflight: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopped = False

    @property
    def depth(self) -> int:
        """Samples waiting for compute (not counting the batch being computed)."""
        return self._depth

    def _ensure_started(self) -> asyncio.Event:
        if self._stopped:
            raise BatcherStoppedError("the server is shutting down")
        if self._task is None or self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecloud-compute")
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(self._wakeup), name="edgecloud-batcher")
        return self._wakeup

    async def start(self) -> None:
        self._ensure_started()

    async def submit(self, x: np.ndarray, *, timeout_s: float) -> np.ndarray:
        """Logits (n, K) for `x` (n, C, H, W), or an error if refused, late or failed."""
        wakeup = self._ensure_started()
        if timeout_s <= 0:
            raise DeadlineExceededError(f"deadline passed before arrival ({1000 * timeout_s:.0f} ms left)")
        n = int(x.shape[0])
        if n > self.max_queue_size:
            raise ValueError(f"a request of {n} samples can never fit max_queue_size={self.max_queue_size}")
        if self._depth + n > self.max_queue_size:
            raise QueueFullError(f"queue full: {self._depth} of {self.max_queue_size} samples waiting, "
                                 f"request has {n}")
        loop = asyncio.get_running_loop()
        now = loop.time()
        item = _Pending(x, now + timeout_s, now, loop.create_future())
        self._queue.append(item)
        self._depth += n
        self._metrics.queue_depth.set(self._depth)
        wakeup.set()
        try:
            # On timeout or client disconnect wait_for cancels the future, so the batch loop skips it.
            return await asyncio.wait_for(item.future, timeout_s)
        except TimeoutError:
            raise DeadlineExceededError(f"deadline of {1000 * timeout_s:.0f} ms passed before the result "
                                        f"was ready (waited {1000 * (loop.time() - now):.0f} ms)") from None
        finally:
            self._discard(item)

    def _discard(self, item: _Pending) -> None:
        """Free a finished or abandoned request's queue slots at once, not when the loop reaches it."""
        if item.future.done() and item in self._queue:
            self._queue.remove(item)
            self._depth -= item.n
            self._metrics.queue_depth.set(self._depth)

    async def _run(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                wakeup.clear()
                await wakeup.wait()
            # Triton's rule: wait until the batch is full or the oldest request has waited the delay.
            window_end = self._queue[0].enqueued + self._delay
            while self._queue and self._depth < self.max_batch_size:
                left = window_end - loop.time()
                if left <= 0:
                    break
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), left)
            batch = self._take(loop.time())
            if batch:
                await self._run_batch(batch, loop)

    def _take(self, now: float) -> list[_Pending]:
        """Pop up to max_batch_size samples (at least one request), skipping abandoned and late ones."""
        batch: list[_Pending] = []
        samples = 0
        while self._queue:
            item = self._queue[0]
            if batch and samples + item.n > self.max_batch_size:
                break
            self._queue.popleft()
            self._depth -= item.n
            if item.future.done():  # cancelled: deadline timer fired or the client went away
                continue
            if now >= item.deadline:
                item.future.set_exception(DeadlineExceededError("deadline passed while queued; not computed"))
                continue
            self._metrics.queue_wait.observe(now - item.enqueued)
            batch.append(item)
            samples += item.n
        self._metrics.queue_depth.set(self._depth)
        return batch

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Worker thread: one pass per max_batch_size chunk (only a single oversized request chunks)."""
        parts = []
        for start in range(0, len(x), self.max_batch_size):
            chunk = x[start:start + self.max_batch_size]  # (b, C, H, W)
            began = time.perf_counter()
            logits = self._compute(chunk)  # (b, K)
            self._metrics.compute.observe(time.perf_counter() - began)
            self._metrics.batch_size.observe(len(chunk))
            if logits.ndim != 2 or logits.shape[0] != len(chunk):
                raise ComputeError(f"backend returned logits of shape {logits.shape} "
                                   f"for {len(chunk)} samples")
            parts.append(logits)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _run_batch(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        x = batch[0].x if len(batch) == 1 else np.concatenate([item.x for item in batch])  # (B, C, H, W)
        self._inflight = batch
        try:
            logits = await loop.run_in_executor(self._executor, self._forward, x)
        except Exception as err:  # the service boundary for compute: every waiter gets a 500 naming it
            logger.exception("teacher failed on a batch of %d samples", len(x))
            failure = err if isinstance(err, ComputeError) else ComputeError(
                f"teacher failed on a batch of {len(x)} samples: {type(err).__name__}: {err}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
            return
        finally:
            self._inflight = []
        offset = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(logits[offset:offset + item.n])
            offset += item.n

    async def stop(self) -> None:
        """Fail everything queued or computing with 503 and stop the loop and the worker thread."""
        self._stopped = True
        waiting = [*self._queue, *self._inflight]  # before cancelling: the loop clears _inflight as it exits
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(BatcherStoppedError("the server is shutting down"))
        self._queue.clear()
        self._depth = 0
        self._metrics.queue_depth.set(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
