"""Drive a live edge agent over the Open Inference Protocol and time every request.

Each strategy is the same stream of test samples sent to the edge's `edge` model, with the OIP
request parameter `strategy` (edge_only, cloud_only, cooperation) telling the agent whether to
offload never, always, or where the offloader says (paper Table VII's three columns). Going
through the edge for all three keeps the comparison fair: a cloud-only sample also starts at the
edge and pays the edge-to-cloud link.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from shared.names import Strategy
from shared.oip import decode_response, encode_request

STRATEGIES: tuple[str, ...] = (Strategy.EDGE_ONLY, Strategy.CLOUD_ONLY, Strategy.COOPERATION)
"""The order rounds run in: edge, cloud, cooperation, edge, ..."""
EDGE_MODEL = "edge"


@dataclass
class StrategyRun:
    """What one strategy did to the test stream; per-sample arrays are in test-split order."""

    strategy: str
    runtime_s: float
    labels: np.ndarray                          # (N,) int64, -1 where no answer came back
    sources: list[str]                          # per sample: edge, cloud, edge-fallback, or "" if unanswered
    latency_s: np.ndarray                       # (N,) the latency of the request that carried the sample
    errors: list[str] = field(default_factory=list)


async def _one_request(client: httpx.AsyncClient, url: str, x: np.ndarray, strategy: str,
                       ) -> tuple[np.ndarray, list[str], float]:
    body, headers = encode_request({"input": x}, binary=True, outputs=("label", "source"),
                                   parameters={"strategy": strategy})
    started = time.perf_counter()
    response = await client.post(url, content=body, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"edge answered {response.status_code}: {response.text[:200]}")
    _, outputs = decode_response(response.content, response.headers)
    sources = [s.decode() if isinstance(s, bytes) else str(s) for s in outputs["source"].reshape(-1)]
    return outputs["label"].astype(np.int64).reshape(-1), sources, elapsed


async def run_strategy(edge_url: str, x: np.ndarray, strategy: str, *, batch_size: int, concurrency: int,
                       timeout_s: float = 30.0, on_batch: Callable[[int], None] | None = None) -> StrategyRun:
    """Send `x` (raw uint8 (N,C,H,W), or (N,) encoded files) to the edge in batches, `concurrency` in flight."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    n = len(x)
    labels = np.full(n, -1, dtype=np.int64)
    sources = [""] * n
    latency = np.full(n, np.nan)
    errors: list[str] = []
    url = f"{edge_url.rstrip('/')}/v2/models/{EDGE_MODEL}/infer"
    starts = list(range(0, n, batch_size))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in starts:
        queue.put_nowait(s)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            start = queue.get_nowait()
            stop = min(start + batch_size, n)
            try:
                got, src, elapsed = await _one_request(client, url, x[start:stop], strategy)
            except (httpx.HTTPError, RuntimeError, ValueError) as err:
                errors.append(f"samples {start}-{stop - 1}: {err}")
                continue
            labels[start:stop], sources[start:stop], latency[start:stop] = got, src, elapsed
            if on_batch is not None:
                on_batch(stop - start)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        runtime = time.perf_counter() - started
    return StrategyRun(strategy, runtime, labels, sources, latency, errors)


def scrape_counter(metrics_text: str, name: str) -> float:
    """Sum every sample of a Prometheus counter in an exposition text (all label sets)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def fetch_metrics(base_url: str, *, timeout_s: float = 5.0) -> str:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.get(f"{base_url.rstrip('/')}/metrics")
        response.raise_for_status()
        return response.text
