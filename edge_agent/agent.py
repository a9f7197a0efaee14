"""The cooperative inference loop (Zhang et al. §III): student on the edge, complex samples to the cloud.

Per batch: raw pixels -> student logits -> offloader decision; the samples it flags complex go to
the cloud teacher, the rest are answered at once. Offloads are pipelined: `stream` keeps running the
student on the next batches while earlier offloads are in flight (at most `max_inflight` batches
outstanding), and still yields answers in input order. Every answer names its source (`edge`,
`cloud`, `fused` when fusion is on, or `edge-fallback` with a reason); no sample is ever dropped,
because a failed offload is answered by the student's own prediction, which is already computed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import numpy as np

from edge_agent.cloud_client import CloudAnswer, CloudClient, OffloadError
from edge_agent.engine import EdgeEngine, StudentOutput
from edge_agent.metrics import EdgeMetrics
from edge_agent.settings import EdgeSettings
from serving.batcher import Batcher
from serving.metrics import ModelMetrics
from shared.names import AnswerSource, Strategy
from shared.oip import ProtocolError

STRATEGIES: tuple[str, ...] = tuple(Strategy)
"""`cooperation` follows the offloader; the other two are the paper's reference points (Table VII)."""

MAX_MERGED_SAMPLES = 1024
"""Most samples in one merged student pass by default (EdgeSettings.max_merged_samples); a larger single
request runs in chunks of this size."""
DEFAULT_QUEUE_SAMPLES = 8192
"""Samples that may wait for the student when the agent is built without settings (tests, `edge run`)."""


class NoCloudError(ProtocolError):
    """A strategy needs the cloud but the agent runs edge-only (no cloud_url): 422."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=422)


@dataclass(frozen=True)
class Answers:
    """One batch's answers, in input order."""

    labels: np.ndarray   # (N,) int64
    sources: np.ndarray  # (N,) object array of str: an AnswerSource
    reasons: np.ndarray  # (N,) object array of str: a FallbackReason, "" unless edge-fallback

    def __len__(self) -> int:
        return len(self.labels)


class EdgeAgent:
    """Engine + optional cloud client + metrics; `infer` for one batch, `stream` for many."""

    def __init__(self, engine: EdgeEngine, *, metrics: EdgeMetrics, cloud: CloudClient | None = None,
                 max_inflight: int = 8, max_queue_size: int = DEFAULT_QUEUE_SAMPLES,
                 model_metrics: ModelMetrics | None = None, max_merged_samples: int = MAX_MERGED_SAMPLES) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.engine = engine
        self.metrics = metrics
        self.cloud = cloud
        self.max_inflight = max_inflight
        self._offloads_in_flight = 0
        self._executor: ThreadPoolExecutor | None = None  # `stream`'s compute thread, started when needed
        # Concurrent requests share student passes: the runtime's batcher with no waiting window (an idle
        # edge computes at once; requests arriving during a pass go together into the next one).
        self.batcher = Batcher(self._pass, max_batch_size=max_merged_samples, max_queue_delay_s=0.0,
                               max_queue_size=max_queue_size, metrics=model_metrics, name="edge")

    def _check_strategy(self, strategy: str) -> Strategy:
        try:
            chosen = Strategy(strategy)
        except ValueError:
            raise ProtocolError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}") from None
        if chosen is Strategy.CLOUD_ONLY and self.cloud is None:
            raise NoCloudError("strategy 'cloud_only' needs a cloud, but this edge agent has no cloud_url")
        return chosen

    def _student(self, x: np.ndarray, strategy: Strategy) -> tuple[StudentOutput, np.ndarray]:
        """Student (+ offloader when it matters) for one batch; (output, offload mask)."""
        decide = strategy is Strategy.COOPERATION and self.cloud is not None  # edge-only: the decision is moot
        out = self.engine.run(x, decide=decide)
        self.metrics.record_batch(student_s=out.student_s, decision_s=out.decision_s if decide else None)
        if strategy is Strategy.CLOUD_ONLY:
            return out, np.ones(len(out.logits), dtype=bool)
        return out, out.offload

    def _compute_thread(self) -> ThreadPoolExecutor:
        # One thread, not asyncio's pool: the offloader is Python (scikit-learn) and holds the GIL,
        # so several pool threads would only take turns with the event loop for it, and every step
        # of an offload in flight would wait behind them.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecloud-student")
        return self._executor

    async def _compute(self, x: np.ndarray, strategy: Strategy) -> tuple[StudentOutput, np.ndarray]:
        # While offloads are in flight, compute in the compute thread (onnxruntime releases the GIL)
        # so their responses are read as they arrive; otherwise inline, saving the thread hop.
        if self._offloads_in_flight:
            return await asyncio.get_running_loop().run_in_executor(self._compute_thread(), self._student, x,
                                                                    strategy)
        return self._student(x, strategy)

    def _pass(self, x: np.ndarray, decides: Sequence[Hashable]) -> dict[str, np.ndarray]:
        """The batcher's worker thread: one merged pass, deciding when any of its requests asked to."""
        decide = any(decides)
        out = self.engine.run(x, decide=decide)
        self.metrics.record_batch(student_s=out.student_s, decision_s=out.decision_s if decide else None)
        return {"logits": out.logits, "offload": out.offload}

    async def start(self) -> None:
        await self.batcher.start()

    async def aclose(self) -> None:
        """Fail what is queued for the student (503), stop its thread and `stream`'s."""
        await self.batcher.stop()
        self.close()

    def close(self) -> None:
        """Stop `stream`'s compute thread, if one was started."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _edge_answers(self, out: StudentOutput, mask: np.ndarray, started: float) -> Answers:
        """Student labels for the whole batch; the unflagged samples are answered (and counted) now."""
        n = len(out.logits)
        answers = Answers(labels=out.logits.argmax(axis=1).astype(np.int64),
                          sources=np.full(n, AnswerSource.EDGE.value, dtype=object),
                          reasons=np.full(n, "", dtype=object))
        self.metrics.record_answers(AnswerSource.EDGE, count=n - int(mask.sum()),
                                    latency_s=time.perf_counter() - started)
        if not mask.any():
            self.metrics.record_offloaded(mask)
        return answers

    def _cloud_labels(self, student_logits: np.ndarray, reply: CloudAnswer) -> tuple[np.ndarray, AnswerSource]:
        """The offloaded samples' labels and their source: fused when the engine fuses and the cloud
        sent logits; else the teacher's label (a label-only cloud, e.g. a Triton model without logits)."""
        if self.engine.fusion is None or reply.logits is None:
            return reply.labels, AnswerSource.CLOUD
        return self.engine.fuse(student_logits, reply.logits), AnswerSource.FUSED

    async def _offload(self, x: np.ndarray, answers: Answers, mask: np.ndarray, started: float,
                       student_logits: np.ndarray) -> Answers:
        """Send the flagged samples to the cloud; fill in its (or the fused) labels, or mark them fallbacks."""
        cloud = self.cloud
        if cloud is None:  # _student never flags a sample without a cloud; guard the invariant anyway
            raise NoCloudError("a sample was flagged for the cloud, but this edge agent has no cloud_url")
        count = int(mask.sum())
        self._offloads_in_flight += 1
        try:
            reply = await cloud.infer(x[mask])
        except OffloadError as err:
            answers.sources[mask] = AnswerSource.FALLBACK.value
            answers.reasons[mask] = err.reason.value
            self.metrics.record_offload(count=count, sent=err.tried, bytes_sent=err.bytes_sent,
                                        reason=err.reason, rtt_s=None)
            self.metrics.record_answers(AnswerSource.FALLBACK, count=count, latency_s=time.perf_counter() - started)
            self.metrics.record_offloaded(mask if err.tried else np.zeros_like(mask))
            return answers
        finally:
            self._offloads_in_flight -= 1
        labels, source = self._cloud_labels(student_logits[mask], reply)
        answers.labels[mask] = labels
        answers.sources[mask] = source.value
        self.metrics.record_offload(count=count, sent=True, bytes_sent=reply.bytes_sent, reason=None,
                                    rtt_s=reply.rtt_s)
        self.metrics.record_answers(source, count=count, latency_s=time.perf_counter() - started)
        self.metrics.record_offloaded(mask)
        return answers

    async def infer(self, x: np.ndarray, *, strategy: str = Strategy.COOPERATION, started: float | None = None,
                    timeout_s: float = 30.0) -> Answers:
        """Answer one batch: (N, C, H, W) raw pixels or (N,) encoded images. `started` is when it arrived.

        Concurrent calls share student passes (the batcher); each answer is still its own. `timeout_s`
        bounds the wait for the student (the offload has its own deadline, `deadline_ms`).
        """
        chosen = self._check_strategy(strategy)
        started = time.perf_counter() if started is None else started
        # Checked here, so that a bad request fails alone, never a merged pass. `x` itself is what an
        # offload sends, so the cloud gets the device's file, not pixels 3-12x its size.
        pixels = await self.engine.preprocessor.check_async(x)
        decide = chosen is Strategy.COOPERATION and self.cloud is not None  # edge-only: the decision is moot
        if len(x) == 0:
            out = StudentOutput(logits=np.zeros((0, self.engine.num_classes), np.float32),
                                offload=np.zeros(0, bool), student_s=0.0, decision_s=0.0)
        else:
            rows = await self.batcher.submit(pixels, timeout_s=timeout_s, tag=decide)
            out = StudentOutput(logits=rows["logits"], offload=rows["offload"], student_s=0.0, decision_s=0.0)
        if chosen is Strategy.CLOUD_ONLY:
            mask = np.ones(len(out.logits), dtype=bool)
        else:  # a merged pass may have decided for a neighbour's sake; only `decide` makes it count here
            mask = out.offload if decide else np.zeros(len(out.logits), dtype=bool)
        answers = self._edge_answers(out, mask, started)
        if mask.any():
            answers = await self._offload(x, answers, mask, started, out.logits)
        return answers

    async def stream(self, batches: Iterable[np.ndarray], *, strategy: str = Strategy.COOPERATION
                     ) -> AsyncIterator[Answers]:
        """Answers for each batch, in order, with offloads overlapping the next batches' compute."""
        chosen = self._check_strategy(strategy)
        pending: deque[Answers | asyncio.Task[Answers]] = deque()

        async def result(item: Answers | asyncio.Task[Answers]) -> Answers:
            return item if isinstance(item, Answers) else await item

        try:
            for x in batches:
                started = time.perf_counter()
                out, mask = await self._compute(x, chosen)
                answers = self._edge_answers(out, mask, started)
                if mask.any():
                    pending.append(asyncio.create_task(self._offload(x, answers, mask, started, out.logits)))
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
    engine = EdgeEngine.load(settings.bundle, threads=settings.threads, threshold=settings.threshold,
                             fusion=settings.fusion)
    if metrics is None:
        metrics = EdgeMetrics(ratio_window=settings.ratio_window, fusion=settings.fusion)
    async with AsyncExitStack() as stack:
        cloud = None
        if settings.cloud_url is not None:
            cloud = await stack.enter_async_context(CloudClient(settings, num_classes=engine.num_classes))
        agent = EdgeAgent(engine, metrics=metrics, cloud=cloud, max_inflight=settings.max_inflight,
                          max_queue_size=settings.max_queue_size, max_merged_samples=settings.max_merged_samples)
        stack.push_async_callback(agent.aclose)
        yield agent
