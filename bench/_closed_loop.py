"""Closed-loop load for one OIP endpoint: N clients, each sending its next request when the last is answered.

Shared by bench/cloud_batching.py, bench/ray_replicas.py and bench/triton_compare.py, with the flags
that set it (`add_load_flags`). Each client holds one keep-alive
connection (_keepalive.py). The first `warmup_s` are not counted; of the `seconds` after it:
- throughput counts the 200 answers that *arrived* inside the window (so a window cannot claim
  answers that came after it);
- latency is measured for every request *sent* inside the window, answered or not;
- non-200 counts every request sent inside the window that got anything but a 200 (no answer too).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
from _keepalive import HttpError, KeepAliveConnection


@dataclass(frozen=True)
class LoadResult:
    """What one closed-loop run measured inside its counted window."""

    seconds: float
    """Length of the counted window."""
    samples_per_request: int
    """Samples in each request body."""
    answered: int
    """200 answers that arrived inside the window."""
    failed: int
    """Requests sent inside the window that got no 200 (another status, or no answer)."""
    latencies_s: np.ndarray
    """(R,) seconds from send to answer of every 200 request sent inside the window."""
    answered_total: int
    """200 answers over the whole run, warm-up and the requests still in flight at the end included."""

    @property
    def samples_per_s(self) -> float:
        return self.answered * self.samples_per_request / self.seconds

    def latency_ms(self, percentile: float) -> float:
        """That percentile of the per-request latency, in ms (NaN when nothing was answered)."""
        if len(self.latencies_s) == 0:
            return float("nan")
        return float(np.percentile(self.latencies_s, percentile) * 1000.0)


def add_load_flags(parser: argparse.ArgumentParser, *, phases: str, warmup: str | None = None, seconds: float = 5.0,
                   warmup_s: float = 1.0, rounds: int = 3, concurrency: int = 32, samples_per_request: int = 1) -> None:
    """--seconds, --warmup (when ``warmup`` names what it precedes), --rounds (of ``phases``), --concurrency and
    --samples-per-request: the load of a benchmark that measures phases side by side, round after round."""
    parser.add_argument("--seconds", type=float, default=seconds, help="counted seconds per phase (%(default)s)")
    if warmup is not None:
        parser.add_argument("--warmup", type=float, default=warmup_s,
                            help=f"uncounted seconds of load before {warmup} (%(default)s)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds of {phases} (%(default)s)")
    parser.add_argument("--concurrency", type=int, default=concurrency, help="closed-loop clients (%(default)s)")
    parser.add_argument("--samples-per-request", type=int, default=samples_per_request,
                        help="samples in each request body (%(default)s)")


async def _client(connection: KeepAliveConnection, path: str, body: bytes, headers: dict[str, str], *,
                  stop_at: float, log: list[tuple[float, float, int]]) -> None:
    """Send back to back until `stop_at`; log (sent, answered, status) of each request (status 0: no answer)."""
    try:
        while (sent := time.perf_counter()) < stop_at:
            try:
                status, _, _ = await connection.post(path, body, headers)
            except HttpError:
                status = 0
            log.append((sent, time.perf_counter(), status))
    finally:
        connection.close()


async def closed_loop(url: str, body: bytes, headers: dict[str, str], *, concurrency: int, seconds: float,
                      warmup_s: float, samples_per_request: int, timeout_s: float = 30.0) -> LoadResult:
    """Drive POST `url` (…/v2/models/NAME/infer) with `concurrency` clients for `warmup_s` + `seconds`."""
    if concurrency < 1 or seconds <= 0 or warmup_s < 0 or samples_per_request < 1:
        raise ValueError(f"closed_loop: bad load (concurrency={concurrency}, seconds={seconds}, "
                         f"warmup_s={warmup_s}, samples_per_request={samples_per_request})")
    base, _, rest = url.partition("/v2/")
    # The connection takes scheme://host:port; a path prefix before /v2/ (Ray Serve's route_prefix) stays in `path`.
    parts = urlsplit(base)
    path = f"{parts.path.rstrip('/')}/v2/{rest}"
    base = f"{parts.scheme}://{parts.netloc}"
    logs: list[list[tuple[float, float, int]]] = [[] for _ in range(concurrency)]
    start = time.perf_counter()
    window_from, window_to = start + warmup_s, start + warmup_s + seconds
    await asyncio.gather(*(_client(KeepAliveConnection(base, timeout_s=timeout_s), path, body, headers,
                                   stop_at=window_to, log=log) for log in logs))
    answered = failed = answered_total = 0
    latencies = []
    for sent, done, status in (entry for log in logs for entry in log):
        answered_total += status == 200
        if status == 200 and window_from <= done < window_to:
            answered += 1
        if window_from <= sent < window_to:
            if status == 200:
                latencies.append(done - sent)
            else:
                failed += 1
    return LoadResult(seconds=seconds, samples_per_request=samples_per_request, answered=answered,
                      failed=failed, latencies_s=np.asarray(latencies, dtype=np.float64),
                      answered_total=answered_total)
