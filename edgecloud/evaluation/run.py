"""Run the three strategies against live services and assemble the report."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from edgecloud.evaluation.driver import STRATEGIES, StrategyRun, fetch_metrics, run_strategy, scrape_counter
from edgecloud.evaluation.report import summarise, write_report
from shared.bundle import REPORTS, load_manifest
from shared.datasets import Split
from shared.preprocess import is_encoded

OFFLOAD_BYTES = "edgecloud_edge_offload_bytes_total"


@dataclass(frozen=True)
class EvalConfig:
    edge_url: str
    """base URL of the edge agent (its OIP endpoint)."""
    cloud_url: str | None = None
    """base URL of the cloud server; only checked for readiness, the edge reaches it itself."""
    batch_size: int = 1
    """samples per request to the edge; 1 makes a request's latency the sample's latency."""
    concurrency: int = 4
    """requests in flight at once."""
    warmup: int = 32
    """samples sent (and not timed) before each strategy, so no strategy pays the cold start."""
    strategies: tuple[str, ...] = STRATEGIES
    """which of edge_only, cloud_only, cooperation to run."""
    timeout_s: float = 30.0
    """per-request timeout of the evaluation client."""
    repeat: int = 1
    """rounds of all strategies, interleaved (edge, cloud, coop, edge, ...); each strategy reports its
    median-runtime round, so a noisy neighbour that slows one round does not decide a ratio."""

    def __post_init__(self) -> None:
        for name, value, least in (("batch_size", self.batch_size, 1), ("concurrency", self.concurrency, 1),
                                   ("repeat", self.repeat, 1), ("warmup", self.warmup, 0)):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")


async def wait_ready(url: str, *, timeout_s: float = 60.0) -> None:
    """Poll OIP readiness; raise TimeoutError naming the URL if it never comes."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                if (await client.get(f"{url.rstrip('/')}/v2/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not become ready within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


async def _bytes_sent(edge_url: str) -> float | None:
    text = await fetch_metrics(edge_url)
    return scrape_counter(text, OFFLOAD_BYTES) if OFFLOAD_BYTES in text else None


async def evaluate(bundle: Path, test: Split, cfg: EvalConfig, *, dataset: str, progress: bool = True,
                   inputs: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, StrategyRun]]:
    """Run every strategy over the test split; `inputs` (default: test.x) is what the requests carry."""
    x = test.x if inputs is None else inputs
    if len(x) != len(test.y):
        raise ValueError(f"{len(x)} request inputs for {len(test.y)} test labels")
    manifest = load_manifest(bundle)
    await wait_ready(cfg.edge_url)
    if cfg.cloud_url:
        await wait_ready(cfg.cloud_url)
    rounds: dict[str, list[tuple[StrategyRun, float | None]]] = {name: [] for name in cfg.strategies}
    for round_no in range(cfg.repeat):
        for strategy in cfg.strategies:
            if cfg.warmup:
                await run_strategy(cfg.edge_url, x[: cfg.warmup], strategy, batch_size=cfg.batch_size,
                                   concurrency=cfg.concurrency, timeout_s=cfg.timeout_s)
            before = await _bytes_sent(cfg.edge_url)
            desc = strategy if cfg.repeat == 1 else f"{strategy} {round_no + 1}/{cfg.repeat}"
            with tqdm(total=len(test.y), desc=desc, unit="sample", disable=not progress) as bar:
                run = await run_strategy(cfg.edge_url, x, strategy, batch_size=cfg.batch_size,
                                         concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, on_batch=bar.update)
            after = await _bytes_sent(cfg.edge_url)
            rounds[strategy].append((run, None if before is None or after is None else after - before))
    runs: dict[str, StrategyRun] = {}
    summaries: dict[str, Any] = {}
    for strategy, done in rounds.items():
        # The median round (the lower one for an even count): every number in a summary is one real run's.
        by_time = sorted(done, key=lambda pair: pair[0].runtime_s)
        run, sent = by_time[(len(by_time) - 1) // 2]
        runs[strategy] = run
        summaries[strategy] = summarise(run, test.y, bytes_sent=sent)
        summaries[strategy]["runtimes_s"] = [r.runtime_s for r, _ in done]
    report = {
        "dataset": dataset,
        "bundle": str(bundle),
        "samples": len(test.y),
        "payload": "files" if is_encoded(x) else "pixels",
        "payload_bytes_per_sample": payload_bytes(x),
        "batch_size": cfg.batch_size,
        "concurrency": cfg.concurrency,
        "repeat": cfg.repeat,
        "teacher_accuracy": manifest.metrics.teacher_accuracy,
        "student_accuracy": manifest.metrics.student_accuracy,
        "operating_point": manifest.operating_point.model_dump(),
        "strategies": summaries,
    }
    return report, runs


def offline_curves(bundle: Path) -> dict[str, Any] | None:
    """The build's accuracy-against-offload-rate curves on the test split, if the bundle has them."""
    path = bundle / REPORTS / "offloading_summary.json"
    if not path.is_file():
        return None
    curves = json.loads(path.read_text()).get("curves")
    return curves or None


def payload_bytes(x: np.ndarray) -> float:
    """Mean bytes of one sample as a request carries it (a file's length, or its pixels' bytes)."""
    if not len(x):
        return 0.0
    if is_encoded(x):
        return float(np.mean([len(item) for item in x]))
    return float(x[0].nbytes)


def run_eval(bundle: Path, test: Split, cfg: EvalConfig, out: Path, *, dataset: str,
             progress: bool = True, inputs: np.ndarray | None = None) -> dict[str, Any]:
    report, runs = asyncio.run(evaluate(bundle, test, cfg, dataset=dataset, progress=progress, inputs=inputs))
    write_report(report, runs, out, curve=offline_curves(bundle))
    return report
