"""The edge agent's Prometheus metrics, in base units, on a registry of its own (one per agent).

Offloads are counted per *sample*, and a success only when a valid cloud answer came back: Sedna
counted a failed offload as an offload, which hides a dead cloud behind a healthy-looking ratio.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from shared.names import AnswerSource, FallbackReason

SOURCES: tuple[str, ...] = tuple(s for s in AnswerSource if s is not AnswerSource.EDGE_SERVER)
"""The sources of the cooperative agent's answers (its series are pre-created at zero). `edge-server`
answers come only from the orchestrator, which counts them in its own series (orchestration/metrics.py)."""
REASONS: tuple[str, ...] = tuple(FallbackReason)
# Latencies from ~1 ms (a student batch) to the longest deadline worth waiting for.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMPUTE_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25, 1.0)


class SlidingRatio:
    """Fraction of True over the last `window` flags, in O(batch) per update (a ring buffer)."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"ratio window must be >= 1 sample, got {window}")
        self._flags = np.zeros(window, dtype=bool)
        self._pos = 0
        self._filled = 0
        self._true = 0

    def extend(self, flags: np.ndarray) -> float:
        """Push a batch of flags (oldest first); return the ratio over the window."""
        flags = np.asarray(flags, dtype=bool).reshape(-1)
        window = len(self._flags)
        flags = flags[-window:]  # a batch longer than the window replaces it entirely
        n = len(flags)
        idx = (self._pos + np.arange(n)) % window
        # Never-written slots hold False, so summing what is overwritten counts exactly the evicted Trues.
        self._true += int(flags.sum()) - int(self._flags[idx].sum())
        self._flags[idx] = flags
        self._pos = (self._pos + n) % window
        self._filled = min(window, self._filled + n)
        return self.value

    @property
    def value(self) -> float:
        return self._true / self._filled if self._filled else 0.0


class SampleHistogram:
    """A labelled Prometheus histogram that records `count` equal observations in one O(1) call.

    All the samples of a batch share one end-to-end latency; observing them one by one through
    prometheus_client costs ~1 us each, which at edge batch sizes is visible next to the student.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._bounds = [*sorted(buckets), math.inf]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}  # key -> (counts, [sum])
        self._lock = threading.Lock()
        registry.register(self)

    def ensure(self, *labelvalues: str) -> None:
        """Create the series for these label values, so a scrape shows it at zero."""
        with self._lock:
            self._series.setdefault(labelvalues, ([0] * len(self._bounds), [0.0]))

    def observe(self, value: float, *labelvalues: str, count: int = 1) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labelvalues}")
        index = bisect.bisect_left(self._bounds, value)  # first bucket with value <= le
        with self._lock:
            counts, total = self._series.setdefault(labelvalues, ([0] * len(self._bounds), [0.0]))
            counts[index] += count
            total[0] += value * count

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for key, (counts, total) in self._series.items():
                cumulative = np.cumsum(counts).tolist()
                buckets = [(floatToGoString(b), c) for b, c in zip(self._bounds, cumulative, strict=True)]
                family.add_metric(list(key), buckets, total[0])
        yield family


class EdgeMetrics:
    """Counters, histograms and the offload-ratio gauge of one agent; `exposition()` for GET /metrics."""

    def __init__(self, *, ratio_window: int, registry: CollectorRegistry | None = None, fusion: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("edgecloud_edge_requests", "samples answered, by source", ["source"], registry=r)
        self.latency = SampleHistogram("edgecloud_edge_latency_seconds", "end-to-end latency per sample, by source",
                                       ["source"], buckets=LATENCY_BUCKETS, registry=r)
        self.offload_attempts = Counter(
            "edgecloud_edge_offload_attempts", "samples sent to the cloud (at least one request on the wire)",
            registry=r)
        self.offload_success = Counter(
            "edgecloud_edge_offload_success", "samples answered by a valid cloud response", registry=r)
        self.offload_bytes = Counter(
            "edgecloud_edge_offload_bytes", "request body bytes sent to the cloud, retries included", registry=r)
        self.fallbacks = Counter("edgecloud_edge_fallbacks", "samples answered by the student after a failed "
                                 "or refused offload, by reason", ["reason"], registry=r)
        self.offload_ratio = Gauge(
            "edgecloud_edge_offload_ratio", "offloaded / answered over the last ratio_window samples", registry=r)
        self.cloud_rtt = Histogram("edgecloud_edge_cloud_rtt_seconds", "round trip of successful cloud requests",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.student_seconds = Histogram("edgecloud_edge_student_seconds", "student forward pass per batch",
                                         buckets=COMPUTE_BUCKETS, registry=r)
        self.decision_seconds = Histogram("edgecloud_edge_decision_seconds", "offloader decision per batch",
                                          buckets=COMPUTE_BUCKETS, registry=r)
        # Pre-create every label so that a scrape shows zeros instead of missing series; `fused` only when
        # fusion is on, so that an agent without it shows no series for answers it can never give.
        for source in SOURCES:
            if source == AnswerSource.FUSED and not fusion:
                continue
            self.requests.labels(source=source)
            self.latency.ensure(source)
        for reason in REASONS:
            self.fallbacks.labels(reason=reason)
        self._ratio = SlidingRatio(ratio_window)
        self._lock = threading.Lock()  # the ratio window may be fed from the loop and worker threads

    def record_batch(self, *, student_s: float, decision_s: float | None) -> None:
        self.student_seconds.observe(student_s)
        if decision_s is not None:
            self.decision_seconds.observe(decision_s)

    def record_answers(self, source: str, *, count: int, latency_s: float) -> None:
        """`count` samples answered by `source`, each `latency_s` after its batch arrived."""
        if count <= 0:
            return
        self.requests.labels(source=source).inc(count)
        self.latency.observe(latency_s, source, count=count)

    def record_offload(self, *, count: int, sent: bool, bytes_sent: int, reason: str | None,
                       rtt_s: float | None) -> None:
        """One offload of `count` samples: on the wire or not, and a success (`reason` None) or not."""
        if sent:
            self.offload_attempts.inc(count)
        if bytes_sent:
            self.offload_bytes.inc(bytes_sent)
        if reason is None:
            self.offload_success.inc(count)
            if rtt_s is not None:
                self.cloud_rtt.observe(rtt_s)
        else:
            self.fallbacks.labels(reason=reason).inc(count)

    def record_offloaded(self, offloaded: np.ndarray) -> None:
        """Per answered sample: was it offloaded (flagged complex and sent)? Feeds the ratio gauge."""
        with self._lock:
            self.offload_ratio.set(self._ratio.extend(offloaded))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
