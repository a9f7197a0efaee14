"""The one dynamic batcher: merge concurrent requests into one pass, bounded in samples, with deadlines.

Every model the runtime hosts computes through one of these, whatever its tier: the cloud's
teacher batches 1-sample offloads the way Triton's dynamic batcher does, and the edge coalesces
concurrent clients into one student + offloader pass. The difference is one setting:

- `max_queue_delay_s > 0`: the oldest queued request waits at most that long for others to join;
  a batch closes early once it holds `max_batch_size` samples (Triton's rule).
- `max_queue_delay_s == 0`: no waiting window. An idle model computes a request at once, and the
  requests that arrive while a pass runs go together into the next one, so passes grow with the
  load by themselves and cost nothing when there is none.

Compute runs in one worker thread, so the event loop keeps accepting (and refusing) requests
meanwhile. The queue is bounded in *samples*: a request that does not fit is refused at once
(QueueFullError, 503), never parked, because a client behind a full queue is better served by its
own fallback than by waiting (unlike Ray Serve's unbounded queue). Work whose deadline passes while
queued is dropped without being computed (504). A merged pass that fails is re-run request by
request, so whatever broke it fails only the request that brought it.

The compute function takes the merged (B, ...) batch and the requests' tags (one each, e.g. "run
the offloader too") and returns a dict of arrays whose first axis is B; each caller gets its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from shared.oip import ProtocolError

logger = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]
Compute = Callable[[np.ndarray, Sequence[Hashable]], Outputs]
"""(merged batch (B, ...), one tag per request in it) -> {name: (B, ...) array}."""


class QueueFullError(Exception):
    """The queue cannot take the request's samples now (503 with Retry-After)."""


class DeadlineExceededError(Exception):
    """The request's time budget ran out before its result was ready; it was not computed (504)."""


class BatcherStoppedError(Exception):
    """The model is being unloaded or the server is shutting down (503)."""


class ComputeError(RuntimeError):
    """The model failed on a batch (500); the message names the batch size and the cause."""


class BatchMetrics(Protocol):
    """What a batcher reports; `serving.metrics.ModelMetrics` implements it per model."""

    def queue_wait(self, seconds: float) -> None: ...
    def computed(self, *, seconds: float, samples: int) -> None: ...
    def queue_depth(self, samples: int) -> None: ...


class NoMetrics:
    def queue_wait(self, seconds: float) -> None:
        pass

    def computed(self, *, seconds: float, samples: int) -> None:
        pass

    def queue_depth(self, samples: int) -> None:
        pass


@dataclass(eq=False)
class _Pending:
    x: np.ndarray  # (n, ...) one request's samples
    tag: Hashable
    deadline: float  # event-loop clock
    enqueued: float
    future: asyncio.Future[Outputs] = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def _rows(outputs: Outputs, start: int, stop: int) -> Outputs:
    return {name: value[start:stop] for name, value in outputs.items()}


class Batcher:
    """`await submit(x, timeout_s=...)` from many tasks; passes run one at a time in the worker thread."""

    def __init__(self, compute: Compute, *, max_batch_size: int, max_queue_delay_s: float, max_queue_size: int,
                 metrics: BatchMetrics | None = None, name: str = "model") -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_queue_delay_s < 0:
            raise ValueError(f"bad batcher limits for {name!r}: max_batch_size={max_batch_size}, "
                             f"max_queue_size={max_queue_size}, max_queue_delay_s={max_queue_delay_s}")
        self._compute = compute
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self.max_queue_delay_s = max_queue_delay_s
        self._metrics: BatchMetrics = metrics if metrics is not None else NoMetrics()
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

    @property
    def service_s_per_sample(self) -> float:
        """The metrics' moving average of compute seconds per sample (0 without ModelMetrics)."""
        return float(getattr(self._metrics, "service_s_per_sample", 0.0))

    def _ensure_started(self) -> asyncio.Event:
        if self._stopped:
            raise BatcherStoppedError(f"model {self.name!r} is unloading or the server is shutting down")
        if self._task is None or self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"edgecloud-{self.name}")
            self._task = asyncio.get_running_loop().create_task(self._run(self._wakeup),
                                                                name=f"edgecloud-batcher-{self.name}")
        return self._wakeup

    async def start(self) -> None:
        self._ensure_started()

    async def submit(self, x: np.ndarray, *, timeout_s: float, tag: Hashable = None) -> Outputs:
        """The outputs for `x`'s rows, or an error if refused, late or failed."""
        wakeup = self._ensure_started()
        if timeout_s <= 0:
            raise DeadlineExceededError(f"deadline passed before arrival ({1000 * timeout_s:.0f} ms left)")
        n = int(x.shape[0])
        if n > self.max_queue_size:
            raise QueueFullError(f"a request of {n} samples can never fit max_queue_size={self.max_queue_size}")
        if self._depth + n > self.max_queue_size:
            raise QueueFullError(f"queue full: {self._depth} of {self.max_queue_size} samples waiting, "
                                 f"request has {n}")
        loop = asyncio.get_running_loop()
        now = loop.time()
        item = _Pending(x, tag, now + timeout_s, now, loop.create_future())
        self._queue.append(item)
        self._depth += n
        self._metrics.queue_depth(self._depth)
        wakeup.set()
        # A timer, not asyncio.wait_for: wait_for wraps the future in a task per request, which at
        # 1-sample requests is a visible share of the server's CPU.
        timer = loop.call_at(item.deadline, self._expire, item)
        try:
            return await item.future
        except asyncio.CancelledError:
            if item.future.cancelled() and not _current_task_cancelling():
                raise DeadlineExceededError(f"deadline of {1000 * timeout_s:.0f} ms passed before the result "
                                            f"was ready (waited {1000 * (loop.time() - now):.0f} ms)") from None
            raise
        finally:
            timer.cancel()
            self._discard(item)

    def _expire(self, item: _Pending) -> None:
        if not item.future.done():
            item.future.cancel()  # the batch loop skips it; submit turns this into DeadlineExceededError

    def _discard(self, item: _Pending) -> None:
        """Free a finished or abandoned request's queue slots at once, not when the loop reaches it."""
        if item.future.done() and item in self._queue:
            self._queue.remove(item)
            self._depth -= item.n
            self._metrics.queue_depth(self._depth)

    async def _run(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                wakeup.clear()
                await wakeup.wait()
            if self.max_queue_delay_s > 0:
                # Triton's rule: wait until the batch is full or the oldest request has waited the delay.
                window_end = self._queue[0].enqueued + self.max_queue_delay_s
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
            self._metrics.queue_wait(now - item.enqueued)
            batch.append(item)
            samples += item.n
        self._metrics.queue_depth(self._depth)
        return batch

    def _forward(self, x: np.ndarray, tags: Sequence[Hashable]) -> Outputs:
        """Worker thread: one pass per max_batch_size chunk (only a single oversized request chunks)."""
        parts: list[Outputs] = []
        for start in range(0, len(x), self.max_batch_size):
            chunk = x[start:start + self.max_batch_size]
            began = time.perf_counter()
            outputs = self._compute(chunk, tags)
            self._metrics.computed(seconds=time.perf_counter() - began, samples=len(chunk))
            bad = {name: list(value.shape) for name, value in outputs.items()
                   if value.ndim == 0 or value.shape[0] != len(chunk)}
            if bad or not outputs:
                raise ComputeError(f"model {self.name!r} returned outputs of shapes {bad or 'none'} "
                                   f"for {len(chunk)} samples")
            parts.append(outputs)
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    async def _pass(self, items: list[_Pending], loop: asyncio.AbstractEventLoop) -> Outputs:
        x = items[0].x if len(items) == 1 else np.concatenate([item.x for item in items])  # (B, ...)
        return await loop.run_in_executor(self._executor, self._forward, x, [item.tag for item in items])

    async def _run_batch(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        self._inflight = batch
        try:
            try:
                outputs = await self._pass(batch, loop)
            except Exception as err:  # the service boundary for compute
                if len(batch) == 1:
                    self._fail(batch[0], err)
                    return
                # Re-run one by one, so that whatever broke the merged pass fails only its own request.
                for item in batch:
                    if item.future.done():
                        continue
                    try:
                        alone = await self._pass([item], loop)
                    except Exception as single:
                        self._fail(item, single)
                    else:
                        if not item.future.done():
                            item.future.set_result(alone)
                return
        finally:
            self._inflight = []
        offset = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(_rows(outputs, offset, offset + item.n))
            offset += item.n

    def _fail(self, item: _Pending, err: Exception) -> None:
        failure: Exception = err
        if not isinstance(err, ProtocolError | ComputeError):
            # ProtocolError is the request's own fault (e.g. pixels that drive the model to NaN): its 4xx
            # passes through. Anything else is the model's, and becomes a 500 that names it.
            logger.error("model %r failed on a batch of %d samples", self.name, item.n, exc_info=err)
            failure = ComputeError(f"model {self.name!r} failed on a batch of {item.n} samples: "
                                   f"{type(err).__name__}: {err}")
        if not item.future.done():
            item.future.set_exception(failure)

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
                item.future.set_exception(BatcherStoppedError(f"model {self.name!r} is unloading or the "
                                                              "server is shutting down"))
        self._queue.clear()
        self._depth = 0
        self._metrics.queue_depth(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _current_task_cancelling() -> bool:
    """Whether the caller itself is being cancelled (client gone), as opposed to our deadline timer firing."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
