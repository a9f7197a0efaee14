"""The edge agent's memory and CPU while it serves, pinned to one core as a stand-in for a Pi 4 core.

Starts a cloud server, then `taskset -c CORE edgecloud edge serve` pointed at it, sends the test
split through the edge (cooperation, the eval driver's client) from the other cores, and samples
the agent's /proc entries meanwhile. Reported: resident memory (RSS) idle, warm, and its peak
(VmHWM) under load, CPU time per sample and the share of its core it used, and throughput.

    python -m edgecloud.evaluation.footprint --bundle artifacts/mnist --limit 5000

Linux only (/proc, taskset from util-linux). An x86 core is not a Cortex-A72: read the CPU numbers
as an order of magnitude for the Pi, the memory numbers much more closely (same code, same model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecloud.evaluation.driver import run_strategy
from edgecloud.evaluation.report import OFFLOADED_SOURCES
from shared.bundle import load_manifest
from shared.datasets import load_dataset
from shared.names import Strategy
from testbed.services import Service, free_port, start_service, stop_service, wait_ready

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Footprint:
    core: int
    cpus_allowed: str           # the agent's CPU list as the kernel had it: the pinning, checked
    samples: int
    strategy: str
    batch_size: int
    concurrency: int
    rss_idle_mib: float         # resident memory once the agent answered ready, before any request
    rss_warm_mib: float         # after a 64-sample warm-up, before the measured load
    rss_peak_mib: float         # VmHWM at the end: the most it was ever resident
    rss_mean_load_mib: float    # mean RSS sampled under load
    cpu_s: float                # user + system CPU time spent serving the load
    wall_s: float
    cpu_share: float            # cpu_s / wall_s: share of its one core (1.0 = the whole core)
    cpu_ms_per_sample: float
    samples_per_s: float
    p50_ms: float
    offload_rate: float
    load_average: tuple[float, float, float]   # the host's, at the end: other work on the same cores


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise KeyError(f"/proc/{pid}/status has no {field}")


def _status_kib(pid: int, field: str) -> int:
    return int(_status(pid, field).split()[0])  # "123456 kB"


def _cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces) start at index 2 = state; utime, stime are 13, 14.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_pinned_edge(bundle: Path, cloud_url: str, *, core: int, log_dir: Path) -> Service:
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is not on PATH")
    port = free_port()
    log_path = log_dir / "edge.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [taskset, "-c", str(core), sys.executable, "-m", "edgecloud", "edge", "serve", "--bundle", str(bundle),
             "--cloud-url", cloud_url, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Service("edge", f"http://127.0.0.1:{port}", process, log_path)


def measure(bundle: Path, x: np.ndarray, *, core: int, log_dir: Path, strategy: str = Strategy.COOPERATION,
            batch_size: int = 1, concurrency: int = 4) -> Footprint:
    """Serve X (raw uint8 (N,C,H,W)) through a pinned edge agent and sample its footprint."""
    affinity = os.sched_getaffinity(0)
    # The load generator, and the cloud it starts, keep off the edge's core (if there is another one).
    os.sched_setaffinity(0, (affinity - {core}) or affinity)
    cloud = start_service("cloud", ["cloud", "serve", "--bundle", str(bundle)], port=free_port(), log_dir=log_dir)
    edge: Service | None = None
    try:
        wait_ready(cloud)
        edge = start_pinned_edge(bundle, cloud.url, core=core, log_dir=log_dir)
        wait_ready(edge)
        pid = edge.process.pid
        cpus_allowed = _status(pid, "Cpus_allowed_list")
        rss_idle = _status_kib(pid, "VmRSS")
        # Warm up (first inferences allocate onnxruntime's arenas and the HTTP pools), then the RSS again.
        asyncio.run(run_strategy(edge.url, x[:64], strategy, batch_size=batch_size, concurrency=concurrency))
        rss_warm = _status_kib(pid, "VmRSS")
        rss_samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                rss_samples.append(_status_kib(pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        cpu_before, started = _cpu_seconds(pid), time.perf_counter()
        sampler.start()
        run = asyncio.run(run_strategy(edge.url, x, strategy, batch_size=batch_size, concurrency=concurrency))
        wall, cpu = time.perf_counter() - started, _cpu_seconds(pid) - cpu_before
        stop.set()
        sampler.join()
        peak = _status_kib(pid, "VmHWM")
    finally:
        if edge is not None:
            stop_service(edge)
        stop_service(cloud)
        os.sched_setaffinity(0, affinity)
    if run.errors:
        raise RuntimeError(f"{len(run.errors)} requests failed under load, e.g. {run.errors[0]}")
    n = len(x)
    offloaded = sum(1 for s in run.sources if s in OFFLOADED_SOURCES)
    return Footprint(core=core, cpus_allowed=cpus_allowed, samples=n, strategy=strategy, batch_size=batch_size,
                     concurrency=concurrency,
                     rss_idle_mib=rss_idle / 1024, rss_warm_mib=rss_warm / 1024, rss_peak_mib=peak / 1024,
                     rss_mean_load_mib=float(np.mean(rss_samples or [rss_warm])) / 1024, cpu_s=cpu, wall_s=wall,
                     cpu_share=cpu / wall, cpu_ms_per_sample=1e3 * cpu / n, samples_per_s=n / run.runtime_s,
                     p50_ms=float(np.nanpercentile(run.latency_s, 50) * 1e3), offload_rate=offloaded / n,
                     load_average=os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="footprint", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--limit", type=int, default=2000, help="test samples sent (default 2000)")
    parser.add_argument("--core", type=int, default=0, help="CPU the edge agent is pinned to (default 0)")
    parser.add_argument("--strategy", default=Strategy.COOPERATION.value, choices=[s.value for s in Strategy])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--logs", type=Path, default=Path("artifacts/footprint"))
    args = parser.parse_args(argv)
    manifest = load_manifest(args.bundle)
    test = load_dataset(manifest.dataset, data_dir=args.data_dir).test
    result = measure(args.bundle, test.x[: args.limit], core=args.core, log_dir=args.logs, strategy=args.strategy,
                     batch_size=args.batch_size, concurrency=args.concurrency)
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
