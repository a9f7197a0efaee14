"""Edge-agent overhead: `edge run` stream throughput over raw onnxruntime student throughput.

Both sides see the same test split at the same batch size with the same intra-op threads. The raw
side is `session.run` on pre-normalised float32 batches and nothing else; the agent side is the
exact `edgecloud edge run` code path in edge-only mode (input checks, normalisation, the student,
metrics, ordered streaming, writing one JSON line per sample). Target: ratio >= 0.85.

    .venv/bin/python bench/edge_overhead.py --bundle artifacts/mnist --data-dir ../shared/data/mnist
    .venv/bin/python bench/edge_overhead.py --bundle artifacts/demo/bundle          # digits, in seconds
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from _edge_bench import edge_parser, load_test_samples

from edge_agent.agent import open_agent
from edge_agent.runner import run_to_file
from edge_agent.settings import EdgeSettings
from shared.bundle import load_manifest
from shared.datasets import normalize
from shared.onnx_session import open_session

TARGET = 0.85


def raw_throughput(bundle: Path, x: np.ndarray, *, batch_size: int, threads: int, repeats: int) -> float:
    """Best-of-`repeats` samples/s of onnxruntime alone on pre-normalised batches."""
    manifest = load_manifest(bundle)
    session = open_session(bundle / "student.onnx", threads=threads)
    name = session.get_inputs()[0].name
    batches = [normalize(x[i:i + batch_size], manifest.input.mean, manifest.input.std)
               for i in range(0, len(x), batch_size)]
    session.run(None, {name: batches[0]})  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            session.run(None, {name: batch})
        best = min(best, time.perf_counter() - started)
    return len(x) / best


def agent_throughput(settings: EdgeSettings, x: np.ndarray, y: np.ndarray, *, repeats: int) -> float:
    """Best-of-`repeats` samples/s of the `edge run` path (edge-only), answers written to a temp file."""

    async def go() -> float:
        best = float("inf")
        async with open_agent(settings) as agent:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "answers.jsonl"
                await run_to_file(agent, x[: settings.batch_size], y[: settings.batch_size], out,
                                  batch_size=settings.batch_size)  # warm-up
                for _ in range(repeats):
                    started = time.perf_counter()
                    summary = await run_to_file(agent, x, y, out, batch_size=settings.batch_size)
                    best = min(best, time.perf_counter() - started)
                    if summary.answered != len(x):
                        raise RuntimeError(f"agent answered {summary.answered} of {len(x)} samples")
        return len(x) / best

    return asyncio.run(go())


def main() -> int:
    args = edge_parser(__doc__, threads_help="onnxruntime intra-op threads, both sides", repeats=5,
                       repeats_help="passes per side; the best one counts").parse_args()

    dataset, x, y = load_test_samples(args)
    settings = EdgeSettings(bundle=args.bundle, batch_size=args.batch_size, threads=args.threads)
    raw = raw_throughput(args.bundle, x, batch_size=args.batch_size, threads=args.threads, repeats=args.repeats)
    agent = agent_throughput(settings, x, y, repeats=args.repeats)
    ratio = agent / raw
    print(f"dataset {dataset}, {len(x)} samples, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"raw onnxruntime student   {raw:12.0f} samples/s")
    print(f"edge agent (edge run)     {agent:12.0f} samples/s")
    print(f"ratio                     {ratio:12.3f}   (target >= {TARGET}: {'PASS' if ratio >= TARGET else 'FAIL'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
