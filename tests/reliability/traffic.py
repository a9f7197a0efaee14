"""Clients that stream samples at a real edge while a test breaks things, and the checks on what came back.

Every request carries its batch number as the OIP request id, and batch k always holds the same
pool samples, so each answer can be checked against a reference computed in this process: the
student (same onnxruntime graph, same batch) for `edge` and `edge-fallback` answers, the teacher
for `cloud` answers, and the offloader's flags for which samples may leave the edge at all.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from edge_agent.engine import EdgeEngine
from shared.bundle import load_manifest
from shared.oip import decode_response, encode_request

REASONS = frozenset({"timeout", "unreachable", "overloaded", "circuit_open", "bad_response", "unauthorized"})
# What a client may see when the edge process itself goes away: the connection fails, nothing else.
CLEAN_CONNECTION_ERRORS = frozenset({"ConnectError", "RemoteProtocolError", "ReadError", "WriteError"})


@dataclass(frozen=True)
class Expected:
    student: np.ndarray  # (n,) int64 student labels
    flagged: np.ndarray  # (n,) bool, the offloader's decision
    teacher: np.ndarray  # (n,) int64 teacher labels


class Reference:
    """The bundle's student, offloader and teacher, run here, to say what each answer must be."""

    def __init__(self, bundle: Path) -> None:
        self.engine = EdgeEngine.load(bundle, threads=1)
        manifest = load_manifest(bundle)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._teacher = ort.InferenceSession(str(bundle / "teacher.onnx"), options,
                                             providers=["CPUExecutionProvider"])
        self._mean = np.asarray(manifest.input.mean, dtype=np.float32).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        self._std = np.asarray(manifest.input.std, dtype=np.float32).reshape(1, -1, 1, 1)
        self._cache: dict[bytes, Expected] = {}  # streams cycle through a few dozen distinct batches

    def expected(self, x: np.ndarray) -> Expected:
        key = x.tobytes()
        if key not in self._cache:
            out = self.engine.run(x)  # the same batch the edge ran, so the same floating-point result
            teacher_in = ((x.astype(np.float32) - self._mean) / self._std).astype(np.float32)  # (n, C, H, W)
            logits = self._teacher.run(None, {"input": teacher_in})[0]
            self._cache[key] = Expected(student=out.logits.argmax(axis=1), flagged=out.offload,
                                        teacher=logits.argmax(axis=1))
        return self._cache[key]


@dataclass
class Outcome:
    """One request: when it went out and came back, and either the answers or what went wrong."""

    batch: int
    idx: np.ndarray          # (n,) indices into the sample pool
    sent: float              # time.monotonic()
    done: float
    status: int | None       # HTTP status; None when no HTTP answer came (connection error)
    labels: np.ndarray | None = None
    sources: np.ndarray | None = None   # (n,) str
    reasons: np.ndarray | None = None   # (n,) str
    error: str = ""          # exception name, or the error body of a non-200

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.labels is not None

    @property
    def latency(self) -> float:
        return self.done - self.sent


def _text(column: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in column], dtype=object)


@dataclass
class Traffic:
    """`clients` concurrent clients posting `batch`-sample requests to `edge_url` until `stop()`."""

    edge_url: str
    pool: np.ndarray             # (P, C, H, W) uint8 raw samples
    clients: int = 4
    batch: int = 8
    pause_s: float = 0.01        # between one client's requests: keeps the stream at a few thousand/s at most
    timeout_s: float = 10.0
    outcomes: list[Outcome] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _next: itertools.count[int] = field(default_factory=itertools.count)
    _stopping: bool = False
    _http: httpx.AsyncClient | None = None

    def indices(self, k: int) -> np.ndarray:
        return (np.arange(self.batch) + k * self.batch) % len(self.pool)

    async def _client(self, http: httpx.AsyncClient) -> None:
        url = f"{self.edge_url}/v2/models/edge/infer"
        while not self._stopping:
            k = next(self._next)
            idx = self.indices(k)
            body, headers = encode_request({"input": self.pool[idx]}, request_id=str(k))
            sent = time.monotonic()
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.HTTPError as err:
                self.outcomes.append(Outcome(k, idx, sent, time.monotonic(), None, error=type(err).__name__))
                await asyncio.sleep(0.05)  # a dead edge refuses at once: do not spin
                continue
            done = time.monotonic()
            if response.status_code != 200:
                self.outcomes.append(Outcome(k, idx, sent, done, response.status_code, error=response.text))
            else:
                parsed, out = decode_response(response.content, response.headers)
                if parsed.id != str(k):
                    raise AssertionError(f"request {k} got the answer of request {parsed.id}")
                self.outcomes.append(Outcome(k, idx, sent, done, 200, labels=out["label"],
                                             sources=_text(out["source"]), reasons=_text(out["fallback_reason"])))
            await asyncio.sleep(self.pause_s)

    def start(self) -> Traffic:
        # One client, one keep-alive connection per concurrent request: building an AsyncClient
        # (its TLS context) blocks the loop for tens of milliseconds on a busy machine, so only once.
        self._http = httpx.AsyncClient(timeout=self.timeout_s, limits=httpx.Limits(max_connections=self.clients))
        self._tasks = [asyncio.create_task(self._client(self._http)) for _ in range(self.clients)]
        return self

    async def stop(self) -> list[Outcome]:
        """Let every request in flight finish, then return all outcomes."""
        self._stopping = True
        try:
            await asyncio.gather(*self._tasks)
        finally:
            if self._http is not None:
                await self._http.aclose()
        return self.outcomes

    def answered(self, since: float = 0.0) -> int:
        return sum(len(o.idx) for o in self.outcomes if o.ok and o.sent >= since)

    async def until(self, condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            for task in self._tasks:  # a client that crashed (a wrong answer id) fails the test now
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout_s:.0f} s still waiting for {what}; "
                                   f"{self.answered()} samples answered so far")
            await asyncio.sleep(0.05)

    async def more(self, samples: int, *, timeout_s: float = 30.0) -> None:
        """Wait until `samples` more samples have been answered."""
        target = self.answered() + samples
        await self.until(lambda: self.answered() >= target, timeout_s=timeout_s, what=f"{samples} more answers")

    async def cloud_answers_after(self, t: float, *, timeout_s: float = 30.0) -> float:
        """Wait for a `cloud` answer to a request sent after `t`; return when the first such answer came.

        That request carried the breaker's successful probe (or came after it), so from then on the
        breaker is closed and requests sent later are offloaded again.
        """
        def found() -> bool:
            return any(o.ok and o.sent > t and "cloud" in o.sources for o in self.outcomes)  # type: ignore[operator]

        await self.until(found, timeout_s=timeout_s, what="the edge to offload to the cloud again")
        return min(o.done for o in self.outcomes if o.ok and o.sent > t and "cloud" in o.sources)  # type: ignore[operator]


def wrong_answers(outcomes: list[Outcome], pool: np.ndarray, reference: Reference, *,
                  cloud: Reference | None = None) -> list[str]:
    """Every way an answer differs from what it must be (empty = all right).

    `reference` is the bundle the edge serves (student labels, offload flags), `cloud` the one the
    cloud serves (teacher labels), the same bundle unless given.
    """
    problems: list[str] = []
    for o in outcomes:
        if not o.ok:
            continue
        assert o.labels is not None and o.sources is not None and o.reasons is not None
        want = reference.expected(pool[o.idx])
        if cloud is not None:
            want = Expected(student=want.student, flagged=want.flagged, teacher=cloud.expected(pool[o.idx]).teacher)
        for i, (label, source, reason) in enumerate(zip(o.labels, o.sources, o.reasons, strict=True)):
            if source == "edge":
                ok = not want.flagged[i] and label == want.student[i] and reason == ""
            elif source == "cloud":
                ok = want.flagged[i] and label == want.teacher[i] and reason == ""
            elif source == "edge-fallback":
                ok = want.flagged[i] and label == want.student[i] and reason in REASONS
            else:
                ok = False
            if not ok:
                problems.append(f"request {o.batch} sample {i}: label {label} source {source!r} reason {reason!r}; "
                                f"flagged={want.flagged[i]} student={want.student[i]} teacher={want.teacher[i]}")
    return problems


def tally(outcomes: list[Outcome]) -> tuple[Counter[str], Counter[str]]:
    """(samples by source, fallback samples by reason) over the answered requests."""
    sources: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for o in outcomes:
        if o.ok:
            assert o.sources is not None and o.reasons is not None
            sources.update(o.sources.tolist())
            reasons.update(r for r in o.reasons.tolist() if r)
    return sources, reasons


def window(outcomes: list[Outcome], *, sent_after: float = -np.inf, done_before: float = np.inf) -> list[Outcome]:
    """The answered requests sent after one moment and answered before another."""
    return [o for o in outcomes if o.ok and o.sent > sent_after and o.done < done_before]
