"""Merge the samples of concurrent requests into one student + offloader pass.

The offloader is scikit-learn: each call pays a fixed Python cost (input validation, pipeline
steps) of about a millisecond, and much more on a busy machine, against microseconds per sample.
An edge serving 32 clients that send one sample each would pay it 32 times per round; merged, it
pays it once. Like the cloud's dynamic batcher, but with no waiting window: an idle edge computes a
request at once, and the requests that arrive while a pass runs go together into the next one, so
passes grow with the load by themselves and cost nothing when there is none.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from edge_agent.engine import StudentOutput

MAX_MERGED_SAMPLES = 1024
"""Most samples in one merged pass; a single larger request still runs, alone."""


@dataclass(eq=False)
class _Item:
    x: np.ndarray  # (n, C, H, W) raw pixels, already checked by the engine
    decide: bool
    future: asyncio.Future[StudentOutput] = field(repr=False)


class StudentCoalescer:
    """`await compute(x, decide=...)` from many tasks; passes run one at a time in the compute thread.

    `run(x, decide)` is the engine's pass (called in `executor()`'s thread). Every request's input
    must already have passed the engine's checks, so one bad request cannot fail a merged pass.
    """

    def __init__(self, run: Callable[[np.ndarray, bool], StudentOutput], *, executor: Callable[[], Executor],
                 max_samples: int = MAX_MERGED_SAMPLES) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self._run = run
        self._executor = executor
        self.max_samples = max_samples
        self._pending: deque[_Item] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def compute(self, x: np.ndarray, *, decide: bool) -> StudentOutput:
        """Logits (and, when `decide` or a merged neighbour asked, the offload flags) for `x`."""
        loop = asyncio.get_running_loop()
        item = _Item(x, decide, loop.create_future())
        self._pending.append(item)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain(), name="edgecloud-student-coalescer")
        return await item.future  # a cancelled caller cancels its future; the pass skips it

    def _take(self) -> list[_Item]:
        items = [self._pending.popleft()]
        samples = len(items[0].x)
        while self._pending and samples + len(self._pending[0].x) <= self.max_samples:
            item = self._pending.popleft()
            items.append(item)
            samples += len(item.x)
        return [item for item in items if not item.future.done()]

    async def _run_alone(self, item: _Item, loop: asyncio.AbstractEventLoop) -> None:
        try:
            out = await loop.run_in_executor(self._executor(), self._run, item.x, item.decide)
        except Exception as err:
            if not item.future.done():
                item.future.set_exception(err)
            return
        if not item.future.done():
            item.future.set_result(out)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            items = self._take()
            if not items:
                continue
            x = items[0].x if len(items) == 1 else np.concatenate([item.x for item in items])  # (B, C, H, W)
            decide = any(item.decide for item in items)
            try:
                out = await loop.run_in_executor(self._executor(), self._run, x, decide)
            except Exception as err:
                if len(items) == 1:
                    if not items[0].future.done():
                        items[0].future.set_exception(err)
                    continue
                # A merged pass failed: run its requests one by one, so that whatever broke it
                # fails only the request that brought it, as if nothing had been merged.
                for item in items:
                    if not item.future.done():
                        await self._run_alone(item, loop)
                continue
            offset = 0
            for item in items:
                n = len(item.x)
                if not item.future.done():
                    item.future.set_result(StudentOutput(logits=out.logits[offset:offset + n],
                                                         offload=out.offload[offset:offset + n],
                                                         student_s=out.student_s, decision_s=out.decision_s))
                offset += n
