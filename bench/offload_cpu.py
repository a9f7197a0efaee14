"""What cooperation costs the edge's one core: CPU seconds and runtime of edge-only against cooperation.

Zhang et al. (Table VII) put cooperation at 1.05x edge-only's runtime. On one edge core that ratio is
set by what an offload costs the edge (its HTTP client, the reply on the event loop) and by the time
the core sits idle waiting for replies. This benchmark serves a bundle (cloud and edge as
subprocesses on loopback, the edge pinned to one core and the cloud to another), sends the test
images (files by default, as a device holds them) at several depths of requests in flight, the two
strategies interleaved, and prints per strategy the runtime and the edge process's CPU seconds
(/proc), with the ratios side by side and the spread over --repeats rounds (median [min, max]).

    .venv/bin/python bench/offload_cpu.py --bundle models/cifar10 --data-dir ../shared/data/cifar10 \
        --limit 5000 --concurrency 8 32 64 --repeats 3 [--max-merged 1024 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecloud.evaluation.driver import run_strategy
from shared.bundle import load_manifest
from shared.datasets import load_dataset, request_inputs
from shared.names import Strategy
from testbed.services import running

STRATEGIES: tuple[str, str] = (Strategy.EDGE_ONLY, Strategy.COOPERATION)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, core: int) -> None:
    subprocess.run(["taskset", "-pc", str(core), str(pid)], check=True, capture_output=True)


def spread(values: list[float]) -> str:
    return f"{np.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, help="dataset folder (not needed for digits)")
    parser.add_argument("--payload", choices=("auto", "files", "pixels"), default="auto",
                        help="what requests carry (as `edgecloud eval --payload`)")
    parser.add_argument("--limit", type=int, default=5000, help="test images per round (default 5000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32], help="requests in flight")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per setting")
    parser.add_argument("--edge-core", type=int, default=0)
    parser.add_argument("--cloud-core", type=int, default=1)
    parser.add_argument("--max-merged", type=int, nargs="+", default=[None],
                        help="the edge's max_merged_samples, one served pair each (default: the edge's own)")
    args = parser.parse_args()

    manifest = load_manifest(args.bundle)
    inputs = request_inputs(load_dataset(manifest.dataset, data_dir=args.data_dir), args.payload)[: args.limit]
    print(f"{len(inputs)} test images as {'files' if inputs.dtype == object else 'pixels'}, batches of "
          f"{args.batch_size}; edge on core {args.edge_core}, cloud on core {args.cloud_core}; "
          f"median [min, max] of {args.repeats} rounds")
    print("| merged ≤ | in flight | edge-only runtime (s) | cooperation runtime (s) | ratio | edge-only edge CPU (s) "
          "| cooperation edge CPU (s) | CPU ratio | cooperation idle share |")
    print("|---:|---:|---|---|---:|---|---|---:|---:|")
    for merged in args.max_merged:
        env = {} if merged is None else {"EDGECLOUD_MAX_MERGED_SAMPLES": str(merged)}
        with tempfile.TemporaryDirectory() as logs, running(args.bundle, log_dir=Path(logs), env=env) as (cloud, edge):
            pin(edge.process.pid, args.edge_core)
            pin(cloud.process.pid, args.cloud_core)
            for depth in args.concurrency:
                row = measure(edge, inputs, depth, args.batch_size, args.repeats)
                print(f"| {merged or 'default'} | {depth} | {row}", flush=True)
    return 0


def measure(edge: Any, inputs: np.ndarray, depth: int, batch_size: int, repeats: int) -> str:
    """One row's cells after the depth: both strategies, `repeats` interleaved rounds."""
    runtime: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    cpu: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for _ in range(repeats):
        for strategy in STRATEGIES:  # interleaved, so drift hits both alike
            asyncio.run(run_strategy(edge.url, inputs[: 4 * batch_size], strategy,
                                     batch_size=batch_size, concurrency=depth))  # warm
            before = cpu_seconds(edge.process.pid)
            run = asyncio.run(run_strategy(edge.url, inputs, strategy, batch_size=batch_size, concurrency=depth))
            if run.errors:
                raise SystemExit(f"{strategy}: {run.errors[0]}")
            cpu[strategy].append(cpu_seconds(edge.process.pid) - before)
            runtime[strategy].append(run.runtime_s)
    edge_rt, coop_rt = runtime[STRATEGIES[0]], runtime[STRATEGIES[1]]
    edge_cpu, coop_cpu = cpu[STRATEGIES[0]], cpu[STRATEGIES[1]]
    idle = 1 - np.median(coop_cpu) / np.median(coop_rt)
    return (f"{spread(edge_rt)} | {spread(coop_rt)} | {np.median(coop_rt) / np.median(edge_rt):.3f} | "
            f"{spread(edge_cpu)} | {spread(coop_cpu)} | {np.median(coop_cpu) / np.median(edge_cpu):.3f} | "
            f"{100 * idle:.1f}% |")


    return 0


if __name__ == "__main__":
    raise SystemExit(main())
