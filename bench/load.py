"""Load test: concurrent clients at a real edge (offloading to a real cloud) for a fixed time.

    .venv/bin/python bench/load.py --bundle artifacts/demo/bundle --duration 60 --clients 32
    .venv/bin/python bench/load.py --bundle /tmp/tiny --duration 60 --clients 32     # tests/helpers/tiny_bundle.py
    .venv/bin/python bench/load.py --edge-url http://127.0.0.1:8000 --edge-pid 123 --cloud-pid 456 --duration 10

With --bundle it starts `edgecloud cloud serve` and `edgecloud edge serve` on free loopback ports
(testbed.services) and stops them at the end; with --edge-url it drives servers already running
and reads RSS from the pids given. Each client is an asyncio task that posts one OIP binary request
of --batch raw test samples (the bundle's dataset; `--data-dir` where it needs files) to the edge's
`edge` model with the cooperation strategy over its own keep-alive HTTP/1.1 connection, and sends
the next as soon as the answer is back. The first --warmup seconds are not counted.

Reports: throughput; p50/p99/p999 latency per sample, by the source that answered it; errors
(any request without a 200 answer; must be 0); fallbacks by reason (not errors: the edge answered);
the RSS of the edge and the cloud after warm-up and at the end, with the growth checked against
--max-rss-growth-mib; and the CPU time each server spent per request. Exits 1 on an error or on
growth past the bound. The load generator shares the machine with both servers, so on a small or
busy machine throughput understates a real edge; CPU per request is the figure that travels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from _keepalive import HttpError, KeepAliveConnection  # bench/ is on sys.path when run as a script
from _proctree import cpu_seconds

from shared.bundle import load_manifest
from shared.datasets import load_dataset
from shared.oip import decode_response, encode_request
from testbed.services import running

MIB = 1 << 20
INFER_PATH = "/v2/models/edge/infer"
PERCENTILES: tuple[float, ...] = (50.0, 99.0, 99.9)


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


@dataclass(frozen=True)
class LoadConfig:
    edge_url: str
    """Base URL of the edge agent."""
    clients: int = 32
    """Concurrent clients, each with one request in flight at a time."""
    duration_s: float = 60.0
    """Counted time, after the warm-up."""
    warmup_s: float = 2.0
    """Time before counting starts (connections, arenas, first batches)."""
    batch: int = 1
    """Samples per request: 1 is a camera sending each frame as it comes."""
    timeout_s: float = 10.0
    """Longest a client waits for one answer before counting an error."""

    def __post_init__(self) -> None:
        if self.clients < 1 or self.batch < 1 or self.duration_s <= 0 or self.warmup_s < 0 or self.timeout_s <= 0:
            raise ValueError(f"bad load config: {self}")


@dataclass
class _Tally:
    latency: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # source -> [(seconds, samples)]
    sources: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    samples: int = 0

    def answer(self, latency_s: float, sources: list[str], reasons: list[str]) -> None:
        self.requests += 1
        self.samples += len(sources)
        counts = Counter(sources)
        self.sources.update(counts)
        self.fallbacks.update(r for r in reasons if r)
        for source, n in counts.items():
            self.latency.setdefault(source, []).append((latency_s, n))


def percentiles(pairs: list[tuple[float, int]]) -> dict[str, float]:
    """Per-sample latency percentiles in ms from (request latency, samples in it) pairs."""
    seconds = np.array([s for s, _ in pairs])
    weights = np.array([n for _, n in pairs])
    per_sample = np.repeat(seconds, weights)  # every sample of a request waited as long as the request
    return {f"p{p:g}": float(np.percentile(per_sample, p)) * 1000.0 for p in PERCENTILES}


@dataclass(frozen=True)
class LoadReport:
    config: LoadConfig
    counted_s: float
    requests: int
    samples: int
    errors: dict[str, int]                     # kind -> requests without a 200 answer
    sources: dict[str, int]                    # samples by source
    fallbacks: dict[str, int]                  # fallback samples by reason
    latency_ms: dict[str, dict[str, float]]    # source -> {p50, p99, p99.9}
    rss: dict[str, tuple[int, int]]            # service -> (bytes after warm-up, bytes at the end)
    cpu_s: dict[str, float]                    # service -> CPU seconds used in the counted time

    @property
    def throughput(self) -> float:
        """Samples answered per second of counted time."""
        return self.samples / self.counted_s

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def rss_growth_mib(self) -> dict[str, float]:
        return {name: (end - start) / MIB for name, (start, end) in self.rss.items()}

    def to_json(self) -> dict[str, object]:
        return {"config": asdict(self.config), "counted_s": self.counted_s, "requests": self.requests,
                "samples": self.samples, "throughput": self.throughput, "errors": self.errors,
                "sources": self.sources, "fallbacks": self.fallbacks, "latency_ms": self.latency_ms,
                "rss_bytes": {k: list(v) for k, v in self.rss.items()}, "rss_growth_mib": self.rss_growth_mib(),
                "cpu_s": self.cpu_s, "cpu_ms_per_request": self.cpu_ms_per_request()}

    def cpu_ms_per_request(self) -> dict[str, float]:
        """CPU each server spent per answered request: unlike throughput, it hardly depends on what
        else the machine is running, so it is the figure to compare across machines and runs."""
        return {name: 1000.0 * s / self.requests if self.requests else 0.0 for name, s in self.cpu_s.items()}

    def format(self) -> str:
        cfg = self.config
        lines = [f"load      {cfg.clients} clients x {cfg.batch} sample(s)/request for {self.counted_s:.1f} s "
                 f"(after {cfg.warmup_s:g} s warm-up) at {cfg.edge_url}",
                 f"answered  {self.samples} samples in {self.requests} requests: {self.throughput:.0f} samples/s, "
                 f"{self.requests / self.counted_s:.0f} requests/s",
                 f"errors    {self.error_count}" + (f" {self.errors}" if self.errors else ""),
                 "sources   " + ", ".join(f"{k}={v}" for k, v in sorted(self.sources.items())),
                 "fallbacks " + (", ".join(f"{k}={v}" for k, v in sorted(self.fallbacks.items())) or "-")]
        for source, ms in sorted(self.latency_ms.items()):
            lines.append(f"latency   {source:<14} " + "  ".join(f"{k} {v:7.2f} ms" for k, v in ms.items()))
        for name, (start, end) in sorted(self.rss.items()):
            lines.append(f"rss       {name:<6} {start / MIB:7.1f} MiB -> {end / MIB:7.1f} MiB "
                         f"({(end - start) / MIB:+.1f} MiB)")
        for name, ms in sorted(self.cpu_ms_per_request().items()):
            lines.append(f"cpu       {name:<6} {self.cpu_s[name]:7.2f} s = {ms:.2f} ms per request "
                         f"({self.cpu_s[name] / self.counted_s:.2f} cores)")
        return "\n".join(lines)


async def _client(cfg: LoadConfig, pool: np.ndarray, first: int, tally: _Tally, *, count_from: float,
                  stop_at: float) -> None:
    connection = KeepAliveConnection(cfg.edge_url, timeout_s=cfg.timeout_s)
    k = first
    try:
        while (sent := time.perf_counter()) < stop_at:
            idx = (np.arange(cfg.batch) + k * cfg.batch) % len(pool)
            k += 1
            body, headers = encode_request({"input": pool[idx]})
            counted = sent >= count_from
            try:
                status, answer_headers, content = await connection.post(INFER_PATH, body, headers)
            except HttpError as err:
                if counted:
                    tally.errors[str(err).split(":", 1)[0]] += 1
                await asyncio.sleep(0.01)  # a refusing server answers at once: do not spin
                continue
            latency = time.perf_counter() - sent
            if not counted:
                continue
            if status != 200:
                tally.errors[f"http {status}"] += 1
                continue
            _, out = decode_response(content, answer_headers)
            tally.answer(latency, [s.decode() for s in out["source"]], [r.decode() for r in out["fallback_reason"]])
    finally:
        connection.close()


async def run_load(cfg: LoadConfig, pool: np.ndarray, *, pids: dict[str, int]) -> LoadReport:
    """Drive the edge at `cfg.edge_url` with samples from `pool` (N, C, H, W) uint8; RSS of `pids` by name."""
    if len(pool) == 0:
        raise ValueError("the sample pool is empty")
    tally = _Tally()
    start = time.perf_counter()
    count_from, stop_at = start + cfg.warmup_s, start + cfg.warmup_s + cfg.duration_s
    clients = [asyncio.create_task(_client(cfg, pool, i * 7919, tally, count_from=count_from, stop_at=stop_at))
               for i in range(cfg.clients)]  # clients start at different samples, like different cameras
    await asyncio.sleep(cfg.warmup_s)
    rss_start = {name: rss_bytes(pid) for name, pid in pids.items()}
    cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.gather(*clients)
    counted_s = time.perf_counter() - count_from  # the last answers arrive a little after stop_at
    rss_end = {name: rss_bytes(pid) for name, pid in pids.items()}
    cpu_used = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in pids.items()}
    return LoadReport(config=cfg, counted_s=counted_s, requests=tally.requests, samples=tally.samples,
                      errors=dict(tally.errors), sources=dict(tally.sources), fallbacks=dict(tally.fallbacks),
                      latency_ms={source: percentiles(pairs) for source, pairs in tally.latency.items()},
                      rss={name: (rss_start[name], rss_end[name]) for name in pids}, cpu_s=cpu_used)


def load_pool(bundle: Path | None, *, dataset: str | None, data_dir: Path | None, samples: Path | None = None,
              seed: int = 0) -> np.ndarray:
    """Raw uint8 samples (N, C, H, W): array `x` of `samples` (.npz), else the test split of `dataset`,
    else of the bundle's dataset."""
    if samples is not None:
        with np.load(samples) as data:
            if "x" not in data:
                raise ValueError(f"{samples} has no array 'x' (it has {sorted(data)})")
            return np.asarray(data["x"])
    name = dataset or (load_manifest(bundle, verify=False).dataset if bundle is not None else None)
    if name is None:
        raise ValueError("say which samples to send: --bundle, --dataset or --samples")
    return load_dataset(name, data_dir=data_dir, seed=seed).test.x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="start a cloud and an edge on this bundle")
    parser.add_argument("--edge-url", help="drive an edge already running instead")
    parser.add_argument("--edge-pid", type=int, help="with --edge-url: the edge's pid, for its RSS")
    parser.add_argument("--cloud-pid", type=int, help="with --edge-url: the cloud's pid, for its RSS")
    parser.add_argument("--dataset", help="samples from this dataset (default: the bundle's)")
    parser.add_argument("--data-dir", type=Path, help="directory holding the dataset's files")
    parser.add_argument("--samples", type=Path, help="send array 'x' of this .npz instead (raw uint8 N,C,H,W)")
    parser.add_argument("--duration", type=float, default=60.0, help="counted seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first (default 2)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--batch", type=int, default=1, help="samples per request (default 1)")
    parser.add_argument("--max-rss-growth-mib", type=float, default=50.0,
                        help="largest RSS growth of either server from warm-up to the end (default 50)")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    if (args.bundle is None) == (args.edge_url is None):
        parser.error("give exactly one of --bundle (start servers) and --edge-url (use running ones)")
    try:
        pool = load_pool(args.bundle, dataset=args.dataset, data_dir=args.data_dir, samples=args.samples)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))

    def drive(edge_url: str, pids: dict[str, int]) -> LoadReport:
        cfg = LoadConfig(edge_url=edge_url, clients=args.clients, duration_s=args.duration, warmup_s=args.warmup,
                         batch=args.batch)
        return asyncio.run(run_load(cfg, pool, pids=pids))

    if args.edge_url is not None:
        pids = {name: pid for name, pid in (("edge", args.edge_pid), ("cloud", args.cloud_pid)) if pid is not None}
        report = drive(args.edge_url.rstrip("/"), pids)
    else:
        with tempfile.TemporaryDirectory(prefix="edgecloud-load-") as logs, \
                running(args.bundle, log_dir=Path(logs)) as (cloud, edge):
            report = drive(edge.url, {"edge": edge.process.pid, "cloud": cloud.process.pid})
    print(report.format())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    growth = report.rss_growth_mib()
    too_much = {name: g for name, g in growth.items() if g > args.max_rss_growth_mib}
    print(f"verdict   errors {report.error_count} (must be 0); RSS growth "
          + (", ".join(f"{k} {v:+.1f} MiB" for k, v in sorted(growth.items())) or "not measured")
          + f" (bound {args.max_rss_growth_mib:g} MiB): " + ("FAIL" if report.error_count or too_much else "PASS"))
    return 1 if report.error_count or too_much else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
