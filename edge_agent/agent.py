"""The cooperative inference loop (Zhang et al. §III): student on the edge, complex samples to the cloud.

Per batch: raw pixels -> student logits -> offloader decision; the samples it flags complex go to
the cloud teacher, the rest are answered at once. Offloads are pipelined: `stream` keeps running the
student on the next batches while earlier offloads are in flight (at most `max_inflight` batches
outstanding), and still yields answers in input order. Every answer names its source (`edge`,
`cloud`, or `edge-fallback` with a reason); no sample is ever dropped, because a failed offload is
answered by the student's own prediction, which is already computed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from edge_agent.cloud_client import CloudClient, OffloadError
from edge_agent.coalesce import StudentCoalescer
from edge_agent.engine import EdgeEngine, StudentOutput
from edge_agent.metrics import EdgeMetrics
from edge_agent.settings import EdgeSettings

Strategy = Literal["cooperation", "edge_only", "cloud_only"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
"""`cooperation` follows the offloader; the other two are the paper's reference points (Table VII)."""

EDGE, CLOUD, FALLBACK = "edge", "cloud", "edge-fallback"


class NoCloudError(ValueError):
    """A strategy needs the cloud but the agent runs edge-only (no cloud_url)."""


@dataclass(frozen=True)
class Answers:
    """One batch's answers, in input order."""

    labels: np.ndarray   # (N,) int64
    sources: np.ndarray  # (N,) object array of str: edge / cloud / edge-fallback
    reasons: np.ndarray  # (N,) object array of str: a FallbackReason, "" unless edge-fallback

    def __len__(self) -> int:
        return len(self.labels)


class EdgeAgent:
    """Engine + optional cloud client + metrics; `infer` for one batch, `stream` for many."""

    def __init__(self, engine: EdgeEngine, *, metrics: EdgeMetrics, cloud: CloudClient | None = None,
                 max_inflight: int = 8) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.engine = engine
        self.metrics = metrics
        self.cloud = cloud
        self.max_inflight = max_inflight
        self._offloads_in_flight = 0
        self._executor: ThreadPoolExecutor | None = None  # started on the first threaded pass
        self._coalescer = StudentCoalescer(self._pass, executor=self._compute_thread)

    def _check_strategy(self, strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if strategy == "cloud_only" and self.cloud is None:
            raise NoCloudError("strategy 'cloud_only' needs a cloud, but this edge agent has no cloud_url")

    def _student(self, x: np.ndarray, strategy: str) -> tuple[StudentOutput, np.ndarray]:
        """Student (+ offloader when it matters) for one batch; (output, offload mask)."""
        decide = strategy == "cooperation" and self.cloud is not None  # edge-only: the decision is moot
        out = self.engine.run(x, decide=decide)
        self.metrics.record_batch(student_s=out.student_s, decision_s=out.decision_s if decide else None)
        if strategy == "cloud_only":
            return out, np.ones(len(out.logits), dtype=bool)
        return out, out.offload

    def _compute_thread(self) -> ThreadPoolExecutor:
        # One thread, not asyncio's pool: the offloader is Python (scikit-learn) and holds the GIL,
        # so several pool threads would only take turns with the event loop for it, and every step
        # of an offload in flight would wait behind them.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecloud-student")
        return self._executor

    async def _compute(self, x: np.ndarray, strategy: str) -> tuple[StudentOutput, np.ndarray]:
        # While offloads are in flight, compute in the compute thread (onnxruntime releases the GIL)
        # so their responses are read as they arrive; otherwise inline, saving the thread hop.
        if self._offloads_in_flight:
            return await asyncio.get_running_loop().run_in_executor(self._compute_thread(), self._student, x,
                                                                    strategy)
        return self._student(x, strategy)

    def _pass(self, x: np.ndarray, decide: bool) -> StudentOutput:
        """Compute thread: one merged pass for the coalescer, timed into the per-batch histograms."""
        out = self.engine.run(x, decide=decide)  # the engine is read once: a hot swap lands between passes
        self.metrics.record_batch(student_s=out.student_s, decision_s=out.decision_s if decide else None)
        return out

    def close(self) -> None:
        """Stop the compute thread, if one was started."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _edge_answers(self, out: StudentOutput, mask: np.ndarray, started: float) -> Answers:
        """Student labels for the whole batch; the unflagged samples are answered (and counted) now."""
        n = len(out.logits)
        answers = Answers(labels=out.logits.argmax(axis=1).astype(np.int64),
                          sources=np.full(n, EDGE, dtype=object), reasons=np.full(n, "", dtype=object))
        self.metrics.record_answers(EDGE, count=n - int(mask.sum()), latency_s=time.perf_counter() - started)
        if not mask.any():
            self.metrics.record_offloaded(mask)
        return answers

    async def _offload(self, x: np.ndarray, answers: Answers, mask: np.ndarray, started: float) -> Answers:
        """Send the flagged samples to the cloud; fill in its labels, or mark them fallbacks."""
        cloud = self.cloud
        if cloud is None:  # _student never flags a sample without a cloud; guard the invariant anyway
            raise NoCloudError("a sample was flagged for the cloud, but this edge agent has no cloud_url")
        count = int(mask.sum())
        self._offloads_in_flight += 1
        try:
            reply = await cloud.infer(x[mask])
        except OffloadError as err:
            answers.sources[mask] = FALLBACK
            answers.reasons[mask] = err.reason.value
            self.metrics.record_offload(count=count, sent=err.tried, bytes_sent=err.bytes_sent,
                                        reason=err.reason.value, rtt_s=None)
            self.metrics.record_answers(FALLBACK, count=count, latency_s=time.perf_counter() - started)
            self.metrics.record_offloaded(mask if err.tried else np.zeros_like(mask))
            return answers
        finally:
            self._offloads_in_flight -= 1
        answers.labels[mask] = reply.labels
        answers.sources[mask] = CLOUD
        self.metrics.record_offload(count=count, sent=True, bytes_sent=reply.bytes_sent, reason=None,
                                    rtt_s=reply.rtt_s)
        self.metrics.record_answers(CLOUD, count=count, latency_s=time.perf_counter() - started)
        self.metrics.record_offloaded(mask)
        return answers

    async def infer(self, x: np.ndarray, *, strategy: str = "cooperation", started: float | None = None
                    ) -> Answers:
        """Answer one (N, C, H, W) raw-pixel batch. `started` (perf_counter) is when it arrived.

        Concurrent calls share student passes (edge_agent/coalesce.py); each answer is still its own.
        """
        self._check_strategy(strategy)
        started = time.perf_counter() if started is None else started
        self.engine.check_input(x)  # here, so that a bad request fails alone, never a merged pass
        decide = strategy == "cooperation" and self.cloud is not None  # edge-only: the decision is moot
        out = await self._coalescer.compute(x, decide=decide)
        if strategy == "cloud_only":
            mask = np.ones(len(out.logits), dtype=bool)
        else:  # a merged pass may have decided for a neighbour's sake; only `decide` makes it count here
            mask = out.offload if decide else np.zeros(len(out.logits), dtype=bool)
        answers = self._edge_answers(out, mask, started)
        if mask.any():
            answers = await self._offload(x, answers, mask, started)
        return answers

    async def stream(self, batches: Iterable[np.ndarray], *, strategy: str = "cooperation"
                     ) -> AsyncIterator[Answers]:
        """Answers for each batch, in order, with offloads overlapping the next batches' compute."""
        self._check_strategy(strategy)
        pending: deque[Answers | asyncio.Task[Answers]] = deque()

        async def result(item: Answers | asyncio.Task[Answers]) -> Answers:
            return item if isinstance(item, Answers) else await item

        try:
            for x in batches:
                started = time.perf_counter()
                out, mask = await self._compute(x, strategy)
                answers = self._edge_answers(out, mask, started)
                if mask.any():
                    pending.append(asyncio.create_task(self._offload(x, answers, mask, started)))
                else:
                    pending.append(answers)
                # Hand back what is finished, in order; block only when too much is outstanding.
                while pending and (isinstance(pending[0], Answers) or pending[0].done()):
                    yield await result(pending.popleft())
                while len(pending) > self.max_inflight:
                    yield await result(pending.popleft())
                if pending:
                    await asyncio.sleep(0)  # let in-flight offloads make progress between batches
            while pending:
                yield await result(pending.popleft())
        finally:
            for item in pending:
                if isinstance(item, asyncio.Task):
                    item.cancel()


@asynccontextmanager
async def open_agent(settings: EdgeSettings, *, metrics: EdgeMetrics | None = None) -> AsyncIterator[EdgeAgent]:
    """Verify the bundle, open the student and (with a cloud_url) the cloud client; close it on exit."""
    engine = EdgeEngine.load(settings.bundle, threads=settings.threads, threshold=settings.threshold)
    metrics = metrics if metrics is not None else EdgeMetrics(ratio_window=settings.ratio_window)
    if settings.cloud_url is None:
        agent = EdgeAgent(engine, metrics=metrics, max_inflight=settings.max_inflight)
        try:
            yield agent
        finally:
            agent.close()
        return
    async with CloudClient(settings, num_classes=engine.num_classes) as cloud:
        agent = EdgeAgent(engine, metrics=metrics, cloud=cloud, max_inflight=settings.max_inflight)
        try:
            yield agent
        finally:
            agent.close()
