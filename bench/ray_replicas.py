"""The cloud on Ray Serve: two replicas against one, side by side, on a local two-node Ray cluster.

    .venv/bin/python bench/ray_replicas.py --bundle artifacts/mnist --data-dir ../shared/data/mnist --out ray.json
    .venv/bin/python bench/ray_replicas.py --bundle /tmp/tiny --seconds 2 --rounds 2      # tests/helpers/tiny_bundle.py

One run, one cluster (edgecloud/ray_cluster.py: a head and a worker node, `ray start` each, each
offering --cpus-per-node logical CPUs), two applications deployed on it by `edgecloud cloud ray-serve`:
- `one` at /one: 1 replica;
- `two` at /two: 2 replicas;
every replica with the same --threads onnxruntime intra-op threads (and as many Ray CPUs), the same
dynamic batching. Both answer through the same Ray Serve proxy. Before anything is timed, both must
give onnxruntime's labels on --check-samples samples.

Each of --rounds rounds loads `one`, then `two` (the order alternates from round to round, so slow
drifts of a shared machine hit both alike) for --seconds each after --warmup uncounted seconds:
--concurrency closed-loop clients, each with one request of --samples-per-request samples in flight.
The table gives each application's median round and [lowest-highest]: samples/s, p50/p99 latency per
request, non-200 answers; then the ratio of the medians, two replicas / one (and per round).

The load generator, the proxy, both nodes and every replica share this machine's cores: the ratio
says what a second replica buys on them, not on a second machine. --out writes everything as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _closed_loop import add_load_flags, closed_loop  # bench/ is on sys.path when run as a script

from edgecloud.ray_cluster import LocalRayCluster
from serving.backends import OnnxBackend
from shared.bundle import BundleError, load_manifest
from shared.datasets import load_dataset
from shared.oip import decode_response, encode_request
from shared.preprocess import normalize
from testbed.services import Service, free_port, start_service, stop_service, wait_ready

APPS: dict[str, int] = {"one": 1, "two": 2}
"""Application name (and route prefix) -> replicas."""


@dataclass(frozen=True)
class Phase:
    samples_per_s: float
    p50_ms: float
    p99_ms: float
    non_200: int


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "low": float(np.min(values)), "high": float(np.max(values))}


def _samples(bundle: Path, data_dir: Path | None, n: int) -> tuple[np.ndarray, str]:
    manifest = load_manifest(bundle)
    try:
        x = load_dataset(manifest.dataset, data_dir=data_dir).test.x[:n]
        return np.ascontiguousarray(x), f"{manifest.dataset} test split"
    except (ValueError, OSError):
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(n, *manifest.input.shape), dtype=np.uint8), "random pixels"


def _deploy(bundle: Path, address: str, name: str, replicas: int, args: argparse.Namespace, port: int,
            log_dir: Path) -> Service:
    service = start_service(f"ray-serve-{name}", [
        "cloud", "ray-serve", "--bundle", str(bundle), "--address", address, "--app-name", name,
        "--route-prefix", f"/{name}", "--replicas", str(replicas), "--threads", str(args.threads),
        "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-ms", str(args.max_queue_delay_ms),
        "--log-level", "info"], port=port, log_dir=log_dir)  # info: the command logs "ready: application" then
    return Service(service.name, f"{service.url}/{name}", service.process, service.log_path)


def _wait_deployed(service: Service, timeout_s: float) -> None:
    wait_ready(service, timeout_s=timeout_s)
    deadline = time.monotonic() + timeout_s
    while "ready: application" not in service.log_tail(1_000_000):  # every replica up, not just the first
        if service.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} did not deploy:\n{service.log_tail()}")
        time.sleep(0.5)


def _check(service: Service, model: str, x: np.ndarray, expected: np.ndarray) -> int:
    body, headers = encode_request({"input": x}, outputs=("label",))
    response = httpx.post(f"{service.url}/v2/models/{model}/infer", content=body, headers=headers, timeout=60)
    response.raise_for_status()
    _, out = decode_response(response.content, response.headers)
    return int((out["label"].reshape(-1) != expected).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle from `edgecloud build` (or the tiny one)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the bundle's dataset, for real samples")
    add_load_flags(parser, phases="one, two", warmup="each phase")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per replica (%(default)s)")
    parser.add_argument("--cpus-per-node", type=float, default=2.0,
                        help="logical CPUs each of the two Ray nodes offers; three replicas of --threads CPUs "
                             "must fit (%(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="dynamic batching limit (%(default)s)")
    parser.add_argument("--max-queue-delay-ms", type=float, default=2.0, help="batching delay (%(default)s)")
    parser.add_argument("--check-samples", type=int, default=64, help="samples checked before timing (%(default)s)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the nodes' and servers' logs here")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON")
    args = parser.parse_args(argv)
    if min(args.seconds, args.rounds, args.concurrency, args.samples_per_request, args.threads) <= 0:
        parser.error("--seconds, --rounds, --concurrency, --samples-per-request and --threads must be positive")
    try:
        manifest = load_manifest(args.bundle, verify=True)
    except BundleError as err:
        raise SystemExit(f"ray_replicas: {err}") from None
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="ray-replicas-"))

    def progress(message: str) -> None:
        print(f"[ray_replicas] {message}", file=sys.stderr, flush=True)

    x, source = _samples(args.bundle, args.data_dir, args.check_samples)
    teacher = manifest.models[manifest.teacher]
    assert teacher.file is not None
    expected = OnnxBackend(args.bundle / teacher.file, threads=1).infer(
        normalize(x, manifest.input.mean, manifest.input.std)).argmax(axis=1)
    body, headers = encode_request({"input": x[:args.samples_per_request]}, outputs=("logits", "label"))
    load_before = os.getloadavg()
    rounds: list[dict[str, Phase]] = []
    progress("starting a two-node Ray cluster")
    with LocalRayCluster(nodes=2, cpus_per_node=args.cpus_per_node, log_dir=log_dir) as cluster:
        port = free_port()
        services: dict[str, Service] = {}
        try:
            for name, replicas in APPS.items():
                progress(f"deploying {name!r} ({replicas} replica(s))")
                services[name] = _deploy(args.bundle, cluster.address, name, replicas, args, port, log_dir)
                _wait_deployed(services[name], timeout_s=600)
            mismatches = {name: _check(service, manifest.teacher, x, expected) for name, service in services.items()}
            if any(mismatches.values()):
                progress(f"labels differ from onnxruntime's on {len(x)} samples: {mismatches}")
                return 1
            replicas_seen = len(cluster.processes("ray::ServeReplica"))
            for index in range(args.rounds):
                order = list(APPS) if index % 2 == 0 else list(reversed(APPS))
                phases = {}
                for name in order:
                    progress(f"round {index + 1}/{args.rounds}: {name}")
                    result = asyncio.run(closed_loop(
                        f"{services[name].url}/v2/models/{manifest.teacher}/infer", body, headers,
                        concurrency=args.concurrency, seconds=args.seconds, warmup_s=args.warmup,
                        samples_per_request=args.samples_per_request))
                    phases[name] = Phase(result.samples_per_s, result.latency_ms(50), result.latency_ms(99),
                                         result.failed)
                rounds.append(phases)
        finally:
            for service in services.values():
                stop_service(service, grace_s=60)
    load_after = os.getloadavg()

    summary = {name: {metric: _spread([getattr(r[name], metric) for r in rounds]) for metric in Phase.__annotations__}
               for name in APPS}
    if any(r[name].samples_per_s <= 0 for r in rounds for name in APPS):
        progress(f"a phase answered nothing (non-200 per round: {[{n: r[n].non_200 for n in APPS} for r in rounds]}); "
                 f"the servers' logs are in {log_dir}")
        return 1
    speedup = summary["two"]["samples_per_s"]["median"] / summary["one"]["samples_per_s"]["median"]
    per_round = [r["two"].samples_per_s / r["one"].samples_per_s for r in rounds]
    report: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cores": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "answer_check": {"samples": len(x), "source": source, "mismatches": mismatches},
        "replica_processes": replicas_seen,
        "rounds": [{name: vars(phase) for name, phase in r.items()} for r in rounds],
        "summary": summary, "two_over_one": speedup, "two_over_one_per_round": per_round,
    }
    cell = "{median:.0f} [{low:.0f}-{high:.0f}]"
    cell_ms = "{median:.2f} [{low:.2f}-{high:.2f}]"
    print(f"cluster   : 2 Ray nodes x {args.cpus_per_node:g} CPUs on this machine ({os.cpu_count()} cores, load "
          f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after); {replicas_seen} replica processes")
    print(f"replicas  : {args.threads} onnxruntime thread(s) each; dynamic batching max {args.max_batch_size}, "
          f"delay {args.max_queue_delay_ms:g} ms")
    print(f"answers   : {len(x)} samples ({source}): labels agree with onnxruntime on both applications")
    print(f"load      : {args.concurrency} clients x {args.samples_per_request} sample(s) per request, {args.rounds} "
          f"rounds of {args.seconds:g} s after {args.warmup:g} s warm-up, through Ray Serve's proxy")
    print()
    print("| replicas | samples/s | p50 ms | p99 ms | non-200 |")
    print("|---:|---:|---:|---:|---:|")
    for name, replicas in APPS.items():
        s = summary[name]
        print(f"| {replicas} | {cell.format(**s['samples_per_s'])} | {cell_ms.format(**s['p50_ms'])} | "
              f"{cell_ms.format(**s['p99_ms'])} | {cell.format(**s['non_200'])} |")
    print()
    print(f"two / one replicas: {speedup:.2f}x (per round: {' '.join(f'{r:.2f}' for r in per_round)})")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
