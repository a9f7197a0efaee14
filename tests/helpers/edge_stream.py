"""Stream samples through a running `edgecloud edge serve` over HTTP, as devices would, and read its counters.

Used by the end-to-end tests that put another cloud (Ray Serve, Triton) behind the edge: the same
samples through the same edge, so the answers can be compared sample by sample.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from shared.names import AnswerSource, FallbackReason
from shared.oip import decode_response, encode_request
from testbed.services import Service, free_port, start_service, stop_service, wait_ready
from tests.edge_agent.helpers import metric

OUTPUTS = ("label", "source", "fallback_reason")


@dataclass(frozen=True)
class EdgeAnswers:
    labels: np.ndarray   # (N,) int64; -1 where no answer came back
    sources: np.ndarray  # (N,) str: edge / cloud / edge-fallback; "" where no answer came back
    reasons: np.ndarray  # (N,) str: a fallback reason or ""
    failed_requests: int  # requests to the edge that got no 200

    @property
    def answered(self) -> int:
        return int((self.sources != "").sum())

    def accuracy(self, y: np.ndarray) -> float:
        return float((self.labels == y).mean())


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values.reshape(-1)], dtype=object)


async def _stream(url: str, x: np.ndarray, *, batch: int, concurrency: int, timeout_s: float,
                  on_answered: Callable[[int], None] | None) -> EdgeAnswers:
    n = len(x)
    labels = np.full(n, -1, dtype=np.int64)
    sources = np.full(n, "", dtype=object)
    reasons = np.full(n, "", dtype=object)
    starts = iter(range(0, n, batch))
    done = [0, 0]  # samples answered, requests failed

    async def worker(client: httpx.AsyncClient) -> None:
        for start in starts:  # shared iterator: each batch goes to exactly one worker
            body, headers = encode_request({"input": x[start:start + batch]}, outputs=OUTPUTS)
            response = await client.post(f"{url}/v2/models/edge/infer", content=body, headers=headers)
            if response.status_code != 200:
                done[1] += 1
                continue
            _, out = decode_response(response.content, response.headers)
            stop = start + len(out["label"])
            labels[start:stop] = out["label"].reshape(-1)
            sources[start:stop] = _text(out["source"])
            reasons[start:stop] = _text(out["fallback_reason"])
            done[0] += stop - start
            if on_answered is not None:
                on_answered(done[0])

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return EdgeAnswers(labels, sources, reasons, failed_requests=done[1])


def stream(url: str, x: np.ndarray, *, batch: int = 10, concurrency: int = 1, timeout_s: float = 60.0,
           on_answered: Callable[[int], None] | None = None) -> EdgeAnswers:
    """Every sample of `x` (N, C, H, W) through the edge at `url` in requests of `batch` samples, from
    `concurrency` clients at once; `on_answered(samples so far)` after each answer."""
    return asyncio.run(_stream(url, x, batch=batch, concurrency=concurrency, timeout_s=timeout_s,
                               on_answered=on_answered))


@dataclass(frozen=True)
class EdgeCounters:
    """The edge's own counts (its /metrics), by answer source and fallback reason."""

    by_source: dict[str, float]
    fallbacks: dict[str, float]
    offload_success: float

    @classmethod
    def read(cls, url: str) -> EdgeCounters:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
        return cls(by_source={s: metric(text, "edgecloud_edge_requests_total", {"source": s})
                              for s in AnswerSource},
                   fallbacks={r: metric(text, "edgecloud_edge_fallbacks_total", {"reason": r})
                              for r in FallbackReason},
                   offload_success=metric(text, "edgecloud_edge_offload_success_total"))

    def minus(self, before: EdgeCounters) -> EdgeCounters:
        return EdgeCounters(by_source={k: v - before.by_source[k] for k, v in self.by_source.items()},
                            fallbacks={k: v - before.fallbacks[k] for k, v in self.fallbacks.items()},
                            offload_success=self.offload_success - before.offload_success)


@contextlib.contextmanager
def edge_serving(bundle: Path, cloud_url: str, log_dir: Path, *, name: str = "edge") -> Iterator[Service]:
    """`edgecloud edge serve` on `bundle`, offloading to the OIP server at `cloud_url` (model `teacher`)."""
    edge = start_service(name, ["edge", "serve", "--bundle", str(bundle), "--cloud-url", cloud_url,
                                "--cloud-model", "teacher", "--threads", "1"], port=free_port(), log_dir=log_dir)
    try:
        wait_ready(edge, timeout_s=120)
        yield edge
    finally:
        stop_service(edge)


def through_cloud_serve(bundle: Path, x: np.ndarray, log_dir: Path) -> EdgeAnswers:
    """`x` through an edge backed by `edgecloud cloud serve`: the reference other clouds are compared with."""
    cloud = start_service("cloud", ["cloud", "serve", "--bundle", str(bundle), "--threads", "1"],
                          port=free_port(), log_dir=log_dir)
    try:
        wait_ready(cloud, timeout_s=120)
        with edge_serving(bundle, cloud.url, log_dir) as edge:
            return stream(edge.url, x)
    finally:
        stop_service(cloud)
