"""Prometheus metrics of the cloud server, in base units, each app in its own registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 0.1 ms to 10 s: batching delays are milliseconds, a stuck queue is seconds.
_SECONDS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class CloudMetrics:
    """One set of series; a fresh CollectorRegistry per app so that tests never collide."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        self.requests = Counter("edgecloud_cloud_requests", "Infer requests answered, by HTTP status code",
                                ["code"], registry=self.registry)
        self.queue_wait = Histogram("edgecloud_cloud_queue_wait_seconds",
                                    "Time a request waited in the batching queue before compute",
                                    buckets=_SECONDS, registry=self.registry)
        self.compute = Histogram("edgecloud_cloud_compute_seconds", "Forward-pass time per batch",
                                 buckets=_SECONDS, registry=self.registry)
        self.batch_size = Histogram("edgecloud_cloud_batch_size", "Samples per forward pass",
                                    buckets=_BATCH, registry=self.registry)
        self.queue_depth = Gauge("edgecloud_cloud_queue_depth", "Samples waiting for compute",
                                 registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
