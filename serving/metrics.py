"""Prometheus metrics of one server of the runtime, labelled by model, in base units.

Every tier exports the same series (`edgecloud_model_*{model=...}`), so one dashboard reads the
edge, an edge server and the cloud alike; a tier adds its own series (the edge's offload ratio,
fallbacks) to the same registry. Each app has its own CollectorRegistry, so tests never collide.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# From 0.1 ms to 10 s: batching delays are milliseconds, a stuck queue is seconds.
SECONDS_BUCKETS: tuple[float, ...] = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
                                      2.0, 5.0, 10.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
EWMA_ALPHA = 0.2
"""Weight of the newest pass in the service-time average a server reports to its clients."""


class ModelMetrics:
    """One model's children of the server's series; also what its batcher reports to (BatchMetrics)."""

    def __init__(self, server: ServerMetrics, model: str) -> None:
        self.model = model
        self._queue_wait = server.queue_wait.labels(model=model)
        self._compute = server.compute.labels(model=model)
        self._batch = server.batch_size.labels(model=model)
        self.depth = 0
        self.service_s_per_sample = 0.0  # EWMA of compute seconds per sample, 0 until the first pass
        # The two gauges read these attributes when scraped, not set on every request: a set takes the
        # child's lock, and the depth changes twice per request.
        server.queue_depth.labels(model=model).set_function(lambda: self.depth)
        server.service_seconds.labels(model=model).set_function(lambda: self.service_s_per_sample)

    def queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    def computed(self, *, seconds: float, samples: int) -> None:
        self._compute.observe(seconds)
        self._batch.observe(samples)
        per_sample = seconds / max(1, samples)
        previous = self.service_s_per_sample
        self.service_s_per_sample = per_sample if previous == 0.0 else (
            EWMA_ALPHA * per_sample + (1.0 - EWMA_ALPHA) * previous)

    def queue_depth(self, samples: int) -> None:
        self.depth = samples


class ServerMetrics:
    """The runtime's series; `for_model` binds them to one model's label."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("edgecloud_model_requests", "infer requests answered, by model and HTTP status",
                                ["model", "code"], registry=r)
        self.request_seconds = Histogram("edgecloud_model_request_seconds",
                                         "time from a request's arrival to its answer, by model",
                                         ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self.queue_wait = Histogram("edgecloud_model_queue_wait_seconds",
                                    "time a request waited in the model's batching queue before compute",
                                    ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self.compute = Histogram("edgecloud_model_compute_seconds", "forward-pass time per batch", ["model"],
                                 buckets=SECONDS_BUCKETS, registry=r)
        self.batch_size = Histogram("edgecloud_model_batch_size", "samples per forward pass", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgecloud_model_queue_depth", "samples waiting for compute", ["model"],
                                 registry=r)
        # Labelled children of the two per-request series, looked up once: `labels()` takes a lock and
        # builds a key on every call, a visible cost at thousands of 1-sample requests a second.
        self._answered: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}
        self.service_seconds = Gauge("edgecloud_model_service_seconds_per_sample",
                                     "recent compute time per sample (moving average), by model", ["model"],
                                     registry=r)

    def answered(self, model: str, status: int, seconds: float | None) -> None:
        """Count one infer answer by model and status; time it unless `seconds` is None (no such model)."""
        counter = self._answered.get((model, status))
        if counter is None:
            counter = self._answered[(model, status)] = self.requests.labels(model=model, code=str(status))
        counter.inc()
        if seconds is not None:
            histogram = self._timed.get(model)
            if histogram is None:
                histogram = self._timed[model] = self.request_seconds.labels(model=model)
            histogram.observe(seconds)

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(self, model)

    def forget(self, model: str) -> None:
        """Drop an unloaded model's series, so a scrape does not show a model that is gone."""
        self._timed.pop(model, None)  # a cached child of a removed series would count into nothing
        for family in (self.request_seconds, self.queue_wait, self.compute, self.batch_size, self.queue_depth,
                       self.service_seconds):
            with contextlib.suppress(KeyError):  # a model unloaded before it served has no series
                family.remove(model)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
