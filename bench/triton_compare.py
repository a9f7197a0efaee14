"""Our cloud server against a real NVIDIA Triton server: same model, same core(s), same load.

    make .venv-triton/.installed        # once: Python 3.12 + nvidia-pytriton + onnxruntime (about a minute)
    .venv/bin/python bench/triton_compare.py --bundle artifacts/mnist --out triton_compare.json
    .venv/bin/python bench/triton_compare.py --bundle /tmp/tiny --seconds 2 --rounds 5   # tests/helpers/tiny_bundle.py

The two servers, both serving the bundle's teacher.onnx as model `teacher` (input `input` UINT8
[-1,C,H,W] raw pixels, normalised as (x - mean) / std per channel from the manifest; outputs `logits`
FP32 and `label` INT64), with the same dynamic batching (--max-batch-size samples, --max-queue-delay-ms)
and the same onnxruntime intra-op --threads:
- ours: `edgecloud cloud serve --bundle B`;
- Triton: the `tritonserver` binary shipped in the nvidia-pytriton wheel, with Triton's own HTTP front
  end and dynamic batcher, and the python backend handing each batch to onnxruntime (bench/_triton_server.py,
  run from .venv-triton). Triton's native onnxruntime backend is not in that wheel.
Before anything is timed, both must give onnxruntime's labels on --check-samples samples sent as a
real OIP binary request by tritonclient; the load then sends one identical request body to both.

Cores: both servers, and every process they spawn (tritonserver, its python-backend stubs), run on
the server cores (default: all usable cores but the first); the load generator runs alone on the first
(--client-cpus), standing for edges on other machines. Raw onnxruntime throughput (batches of
--max-batch-size, in this process) is measured on the server cores with the same threads.

Each of --rounds rounds measures raw, then ours, then Triton, --seconds each (the servers after a
--warmup of uncounted load): --concurrency closed-loop clients, each sending --samples-per-request
samples per request and its next request as soon as the answer is back. The table gives each
server's median round and [lowest-highest] round: samples/s, p50/p95/p99 latency per request, non-200
answers, the server's CPU per request (its whole process tree) and its CPU / wall time (below the
number of server cores while saturated: other work on the machine took the rest), its mean batch
(samples per forward pass, from its own counters: our /metrics, Triton's model statistics), the
load generator's CPU share, and the CPU the idle other server drew meanwhile. Then the two verdicts of issue 10:
  served / raw (ours)   >= 0.85   (median samples/s of ours over median raw samples/s)
  p99 ours / p99 Triton <= 1.0
--out FILE writes all of it, every round included, as JSON. Exit status 1 when the servers cannot
be started or their answers disagree; the verdicts themselves do not change it.

On a machine shared with other work the numbers move from run to run; compare rounds, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from _closed_loop import add_load_flags
from _side_by_side import CompareConfig, CompareError, compare, format_report  # bench/ is on sys.path
from cloud_batching import split_cores

from serving.settings import default_threads
from shared.bundle import BundleError, load_manifest

_DEFAULTS = {name: f.default for name, f in CompareConfig.__dataclass_fields__.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle from `edgecloud build` (or the tiny one)")
    add_load_flags(parser, phases="raw, ours, Triton", warmup="each server's window", seconds=_DEFAULTS["seconds"],
                   warmup_s=_DEFAULTS["warmup_s"], rounds=_DEFAULTS["rounds"], concurrency=_DEFAULTS["concurrency"],
                   samples_per_request=_DEFAULTS["samples_per_request"])
    parser.add_argument("--max-batch-size", type=int, default=_DEFAULTS["max_batch_size"],
                        help="both servers' dynamic batch limit in samples, and the raw batch (%(default)s)")
    parser.add_argument("--max-queue-delay-ms", type=float, default=_DEFAULTS["max_queue_delay_ms"],
                        help="both servers' dynamic batching delay (%(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime intra-op threads everywhere (default: one per server core, as our "
                             "server picks)")
    parser.add_argument("--server-cpus", default=None, metavar="CORES",
                        help="cores for both servers and raw, e.g. 1 or 1-3 (default: all but the first)")
    parser.add_argument("--client-cpus", default=None, metavar="CORES",
                        help="cores for the load generator (default: the first)")
    parser.add_argument("--check-samples", type=int, default=_DEFAULTS["check_samples"],
                        help="samples whose labels both servers must get right before timing (%(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the bundle's dataset files, for real check samples (digits needs none)")
    parser.add_argument("--triton-python", type=Path, default=_DEFAULTS["triton_python"],
                        help="Python of .venv-triton (%(default)s)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep both servers' logs here")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON")
    args = parser.parse_args(argv)

    try:
        manifest = load_manifest(args.bundle, verify=True)
    except BundleError as err:
        raise SystemExit(f"triton_compare: {err}") from None
    server_cpus, client_cpus = split_cores(server_cpus=args.server_cpus, client_cpus=args.client_cpus,
                                           what="triton_compare")
    if server_cpus == client_cpus:
        print(f"triton_compare: only cores {sorted(server_cpus)}: servers and load generator share them",
              file=sys.stderr)
    os.sched_setaffinity(0, server_cpus)
    threads = args.threads or default_threads()  # what our server would pick on these cores
    os.sched_setaffinity(0, client_cpus)
    try:
        cfg = CompareConfig(seconds=args.seconds, warmup_s=args.warmup, rounds=args.rounds,
                            concurrency=args.concurrency, samples_per_request=args.samples_per_request,
                            max_batch_size=args.max_batch_size, max_queue_delay_ms=args.max_queue_delay_ms,
                            threads=threads, server_cpus=frozenset(server_cpus), client_cpus=frozenset(client_cpus),
                            check_samples=args.check_samples, data_dir=args.data_dir,
                            triton_python=args.triton_python)
    except ValueError as err:
        raise SystemExit(f"triton_compare: {err}") from None

    def progress(message: str) -> None:
        print(f"[triton_compare] {message}", file=sys.stderr, flush=True)

    try:
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            report = compare(args.bundle, manifest, cfg, log_dir=args.log_dir, progress=progress)
        else:
            with tempfile.TemporaryDirectory() as logs:
                report = compare(args.bundle, manifest, cfg, log_dir=Path(logs), progress=progress)
    except CompareError as err:
        print(f"triton_compare: {err}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.out is not None:
        args.out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        print(f"\nreport: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
